-- Shared prelude of the write scripts: adds a delta to one metric of a provider key.
-- counter: the seed's usage:{p:k}:metric, a float whose TTL every write refreshes.
-- buckets: a hash of bucket index -> float; fields older than `oldest` are pruned the first time
-- a new bucket is opened, and the whole hash expires bucket_ttl ms after its last write.
local function apply(counter, buckets, delta, ttl, bucket, oldest, bucket_ttl)
  local value = redis.call('INCRBYFLOAT', counter, delta)
  redis.call('PEXPIRE', counter, ttl)
  if tonumber(bucket) >= oldest then
    if redis.call('HEXISTS', buckets, bucket) == 0 then
      local fields = redis.call('HKEYS', buckets)
      for _, field in ipairs(fields) do
        if tonumber(field) < oldest then
          redis.call('HDEL', buckets, field)
        end
      end
    end
    redis.call('HINCRBYFLOAT', buckets, bucket, delta)
    redis.call('PEXPIRE', buckets, bucket_ttl)
  end
  return value
end
