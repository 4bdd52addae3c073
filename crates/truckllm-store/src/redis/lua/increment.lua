
-- Adds deltas to several metrics of one provider key, atomically.
-- KEYS: counter_1, buckets_1, counter_2, buckets_2, ...
-- ARGV: ttl_ms, bucket, oldest_kept_bucket, bucket_ttl_ms, delta_1, delta_2, ...
-- Returns the counters' new values.
local ttl = tonumber(ARGV[1])
local bucket = ARGV[2]
local oldest = tonumber(ARGV[3])
local bucket_ttl = tonumber(ARGV[4])
local out = {}
for i = 1, #KEYS / 2 do
  out[i] = apply(KEYS[2 * i - 1], KEYS[2 * i], ARGV[4 + i], ttl, bucket, oldest, bucket_ttl)
end
return out
