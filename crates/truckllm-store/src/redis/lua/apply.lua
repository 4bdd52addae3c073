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

-- The arguments every write script starts with (7 of them, from ARGV[at]): counter TTL, the
-- bucket written, the oldest bucket kept, the buckets' TTL, the roll-up step written, the
-- oldest roll-up step kept, and the roll-ups' TTL (0: roll-ups off).
local W = {}
local function read_write_args(at)
  W.ttl = tonumber(ARGV[at])
  W.bucket = ARGV[at + 1]
  W.oldest = tonumber(ARGV[at + 2])
  W.bucket_ttl = tonumber(ARGV[at + 3])
  W.step = ARGV[at + 4]
  W.oldest_step = tonumber(ARGV[at + 5])
  W.rollup_ttl = tonumber(ARGV[at + 6])
end

-- Adds a delta to a roll-up (a hash of step index -> total). `opened` says this write opened a
-- new window bucket, which happens at most once a second per series and at every step
-- boundary (a step is a whole number of buckets): only then are steps past retention dropped
-- and the TTL renewed, so a steady stream of writes costs one HINCRBYFLOAT here.
local function add_to_rollup(rollup, delta, opened)
  if W.rollup_ttl <= 0 or tonumber(delta) == 0 or tonumber(W.step) < W.oldest_step then
    return
  end
  if opened then
    for _, field in ipairs(redis.call('HKEYS', rollup)) do
      if tonumber(field) < W.oldest_step then
        redis.call('HDEL', rollup, field)
      end
    end
  end
  redis.call('HINCRBYFLOAT', rollup, W.step, delta)
  if opened then
    redis.call('PEXPIRE', rollup, W.rollup_ttl)
  end
end

-- Adds a delta to one metric: the counter (the seed's usage:{p:k}:metric, TTL refreshed), the
-- bucket and running sum if the bucket is still kept, and the roll-up. The buckets' TTL is
-- renewed when a bucket opens: it then outlasts every window that bucket is in.
local function apply(counter, buckets, rollup, delta)
  local value = redis.call('INCRBYFLOAT', counter, delta)
  redis.call('PEXPIRE', counter, W.ttl)
  local opened = true
  if tonumber(W.bucket) >= W.oldest then
    opened = redis.call('HEXISTS', buckets, W.bucket) == 0
    if opened then
      prune(buckets, W.oldest)
    end
    redis.call('HINCRBYFLOAT', buckets, W.bucket, delta)
    redis.call('HINCRBYFLOAT', buckets, 's', delta)
    if opened then
      redis.call('PEXPIRE', buckets, W.bucket_ttl)
    end
  end
  add_to_rollup(rollup, delta, opened)
  return value
end
