-- Adds deltas to several metrics of one provider key, atomically, at most once per batch id.
-- KEYS: the applied-id hashes of the current marker generation and the two before it (see
--       MarkerGenerations in keys.rs), then counter, buckets, rollup per metric.
-- ARGV: batch id, the current hash's TTL (ms), the 7 write arguments (see read_write_args),
--       then delta_1, delta_2, ...
-- Returns the counters' values: new ones if applied now, current ones if the id was seen.
local id = ARGV[1]
local applied = redis.call('HEXISTS', KEYS[1], id) == 0
  and redis.call('HEXISTS', KEYS[2], id) == 0
  and redis.call('HEXISTS', KEYS[3], id) == 0
if applied then
  redis.call('HSET', KEYS[1], id, '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
read_write_args(3)
local out = {}
for i = 1, (#KEYS - 3) / 3 do
  local counter = KEYS[3 * i + 1]
  if applied then
    out[i] = apply(counter, KEYS[3 * i + 2], KEYS[3 * i + 3], ARGV[9 + i])
  else
    out[i] = redis.call('GET', counter) or '0'
  end
end
return out
