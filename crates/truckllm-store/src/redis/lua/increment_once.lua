
-- Adds deltas to several metrics of one provider key, atomically, at most once per batch id.
-- KEYS: marker, then counter, buckets, rollup per metric.
-- ARGV: marker_ttl_ms, the 7 write arguments (see read_write_args), then delta_1, delta_2, ...
-- Returns the counters' values: new ones if applied now, current ones if the id was seen.
local applied = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1])
read_write_args(2)
local out = {}
for i = 1, (#KEYS - 1) / 3 do
  local counter = KEYS[3 * i - 1]
  if applied then
    out[i] = apply(counter, KEYS[3 * i], KEYS[3 * i + 1], ARGV[8 + i])
  else
    out[i] = redis.call('GET', counter) or '0'
  end
end
return out
