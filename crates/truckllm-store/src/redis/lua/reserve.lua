-- Checks every limit of one provider key; only if all fit, adds every amount. Atomic.
-- KEYS: counter, buckets, rollup per reserved metric, then optionally a batch marker (set when
--       granted, so a replay of this reservation under its id is skipped).
-- ARGV: the 7 write arguments (see read_write_args), bucket_ms, now_ms, n, marker_ttl_ms,
--       amount_1 .. amount_n, then per check: metric_position, limit, window_buckets.
-- Returns {1} when granted, or {0, check_number, used, retry_after_ms} when denied.
read_write_args(1)
local bucket = W.bucket
local now_bucket = tonumber(bucket)
local oldest = W.oldest
local bucket_ms = tonumber(ARGV[8])
local now_ms = tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local marker_ttl = ARGV[11]
local checks_from = 12 + n

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
  local amount = tonumber(ARGV[11 + position])
  local first = now_bucket - window_buckets
  local used = window_sum(KEYS[3 * position - 1], first, oldest, bucket)
  if used + amount > limit + 1e-9 then
    local entries = entries_from(KEYS[3 * position - 1], first)
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
  apply(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[11 + i])
end
if #KEYS > 3 * n then
  redis.call('SET', KEYS[3 * n + 1], '1', 'PX', marker_ttl)
end
return {1}
