
-- Checks every limit of one provider key; only if all fit, adds every amount. Atomic.
-- KEYS: counter_1, buckets_1, ... one pair per reserved metric, then optionally a batch marker
--       (set when granted, so a replay of this reservation under its id is skipped).
-- ARGV: ttl_ms, bucket, oldest_kept_bucket, bucket_ttl_ms, bucket_ms, now_ms, n, marker_ttl_ms,
--       amount_1 .. amount_n, then per check: metric_position, limit, window_buckets.
-- Returns {1} when granted, or {0, check_number, used, retry_after_ms} when denied.
local ttl = tonumber(ARGV[1])
local bucket = ARGV[2]
local now_bucket = tonumber(bucket)
local oldest = tonumber(ARGV[3])
local bucket_ttl = tonumber(ARGV[4])
local bucket_ms = tonumber(ARGV[5])
local now_ms = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local marker_ttl = ARGV[8]
local checks_from = 9 + n

-- The buckets from `first` on, for the retry-after of a denial.
local function entries_from(buckets, first)
  local entries = {}
  local kv = redis.call('HGETALL', buckets)
  for i = 1, #kv, 2 do
    local index = tonumber(kv[i])
    if index and index >= first then
      entries[#entries + 1] = {index, tonumber(kv[i + 1])}
    end
  end
  return entries
end

local check = 0
for c = checks_from, #ARGV, 3 do
  check = check + 1
  local position = tonumber(ARGV[c])
  local limit = tonumber(ARGV[c + 1])
  local window_buckets = tonumber(ARGV[c + 2])
  local amount = tonumber(ARGV[8 + position])
  local first = now_bucket - window_buckets
  local used = window_sum(KEYS[2 * position], first, oldest, bucket)
  if used + amount > limit + 1e-9 then
    local entries = entries_from(KEYS[2 * position], first)
    table.sort(entries, function(a, b) return a[1] < b[1] end)
    local wait = window_buckets * bucket_ms
    local freed = 0
    for _, entry in ipairs(entries) do
      freed = freed + entry[2]
      if used - freed + amount <= limit + 1e-9 then
        wait = math.max(1, (entry[1] + window_buckets + 1) * bucket_ms - now_ms)
        break
      end
    end
    return {0, check, string.format('%.17g', used), wait}
  end
end

for i = 1, n do
  apply(KEYS[2 * i - 1], KEYS[2 * i], ARGV[8 + i], ttl, bucket, oldest, bucket_ttl)
end
if #KEYS > 2 * n then
  redis.call('SET', KEYS[2 * n + 1], '1', 'PX', marker_ttl)
end
return {1}
