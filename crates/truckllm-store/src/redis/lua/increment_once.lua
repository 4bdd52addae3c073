
-- Adds deltas to several metrics of one provider key, atomically, at most once per batch id.
-- KEYS: marker, counter_1, buckets_1, counter_2, buckets_2, ...
-- ARGV: marker_ttl_ms, ttl_ms, bucket, oldest_kept_bucket, bucket_ttl_ms, delta_1, delta_2, ...
-- Returns the counters' values: new ones if applied now, current ones if the id was seen.
local applied = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1])
local ttl = tonumber(ARGV[2])
local bucket = ARGV[3]
local oldest = tonumber(ARGV[4])
local bucket_ttl = tonumber(ARGV[5])
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local counter, buckets = KEYS[2 * i], KEYS[2 * i + 1]
  if applied then
    out[i] = apply(counter, buckets, ARGV[5 + i], ttl, bucket, oldest, bucket_ttl)
  else
    out[i] = redis.call('GET', counter) or '0'
  end
end
return out
