-- Adds deltas to several metrics of one provider key, atomically, at most once per batch id.
-- KEYS: the h applied-id hashes to look in, the current marker generation's first (see
--       MarkerGenerations in keys.rs), then counter, buckets, rollup per metric.
-- ARGV: batch id, the current hash's TTL (ms), h, the 7 write arguments (see
--       read_write_args), then delta_1, delta_2, ...
-- Returns the counters' values: new ones if applied now, current ones if the id was seen.
local id = ARGV[1]
local hashes = tonumber(ARGV[3])
local applied = true
for h = 1, hashes do
  if redis.call('HEXISTS', KEYS[h], id) == 1 then
    applied = false
    break
  end
end
if applied then
  redis.call('HSET', KEYS[1], id, '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
read_write_args(4)
local out = {}
for i = 1, (#KEYS - hashes) / 3 do
  local at = hashes + 3 * i - 2
  if applied then
    out[i] = apply(KEYS[at], KEYS[at + 1], KEYS[at + 2], ARGV[10 + i])
  else
    out[i] = redis.call('GET', KEYS[at]) or '0'
  end
end
return out
