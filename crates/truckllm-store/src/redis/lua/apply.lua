-- Shared prelude of the scripts: window buckets with a running sum, and the counter update.
-- buckets: a hash of bucket index -> float, plus field "s", the sum of every bucket kept.
-- Buckets older than `oldest` are outside every window; prune drops them (subtracting them
-- from "s") the first time a new bucket is opened, and before any read of "s".

local function prune(buckets, oldest)
  local fields = redis.call('HKEYS', buckets)
  local removed, left = 0, 0
  for _, field in ipairs(fields) do
    local index = tonumber(field)
    if index then
      if index < oldest then
        removed = removed + tonumber(redis.call('HGET', buckets, field))
        redis.call('HDEL', buckets, field)
      else
        left = left + 1
      end
    end
  end
  if left == 0 then
    redis.call('HDEL', buckets, 's')
  elseif removed ~= 0 then
    redis.call('HINCRBYFLOAT', buckets, 's', -removed)
  end
end

-- Prunes if the current bucket is not open yet (so at most once per bucket per series).
local function prune_if_new(buckets, bucket, oldest)
  if redis.call('HEXISTS', buckets, bucket) == 0 then
    prune(buckets, oldest)
  end
end

-- Sum of the buckets from index `first` on; reads "s" when that covers every kept bucket.
local function window_sum(buckets, first, oldest, now_bucket)
  if first <= oldest then
    prune_if_new(buckets, now_bucket, oldest)
    return tonumber(redis.call('HGET', buckets, 's') or '0')
  end
  local sum = 0
  local kv = redis.call('HGETALL', buckets)
  for i = 1, #kv, 2 do
    local index = tonumber(kv[i])
    if index and index >= first then
      sum = sum + tonumber(kv[i + 1])
    end
  end
  return sum
end

-- Adds a delta to one metric: the counter (the seed's usage:{p:k}:metric, TTL refreshed) and,
-- if the bucket is still kept, the bucket and the running sum.
local function apply(counter, buckets, delta, ttl, bucket, oldest, bucket_ttl)
  local value = redis.call('INCRBYFLOAT', counter, delta)
  redis.call('PEXPIRE', counter, ttl)
  if tonumber(bucket) >= oldest then
    prune_if_new(buckets, bucket, oldest)
    redis.call('HINCRBYFLOAT', buckets, bucket, delta)
    redis.call('HINCRBYFLOAT', buckets, 's', delta)
    redis.call('PEXPIRE', buckets, bucket_ttl)
  end
  return value
end
