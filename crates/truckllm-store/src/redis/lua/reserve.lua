-- Reserves for one provider key: one or more requests, decided in order as if each were
-- reserved alone. A request is granted only if every one of its limits fits the window's usage
-- plus what earlier requests of this call were granted; a denied request adds nothing. The
-- granted amounts are then written once per metric. Atomic.
-- KEYS: counter, buckets, rollup per metric used by any request (metric position p is keys
--       3p-2 .. 3p), then, if any request carries an id, the current marker generation's
--       hash of applied ids (see MarkerGenerations in keys.rs).
-- ARGV: the 7 write arguments (see read_write_args), bucket_ms, now_ms, metric count m,
--       the marker hash's TTL (ms), request count; then per request: its id ('' for none),
--       amount count, (position, amount) per amount, check count,
--       (position, limit, window_buckets) per check.
-- Returns one answer per request: {1} when granted, or {0, check_number, used, retry_after_ms}.
read_write_args(1)
local now_bucket = tonumber(W.bucket)
local bucket_ms = tonumber(ARGV[8])
local now_ms = tonumber(ARGV[9])
local metrics = tonumber(ARGV[10])
local markers_ttl = ARGV[11]
local requests = tonumber(ARGV[12])

-- What earlier requests of this call were granted, per metric position; `touched` marks the
-- metrics a granted request named (written even if their amounts sum to zero).
local granted, touched = {}, {}
for p = 1, metrics do
  granted[p] = 0
end

-- Window sums before this call, per metric position and window length.
local before = {}
local function used(p, window_buckets)
  local k = p .. ':' .. window_buckets
  if before[k] == nil then
    before[k] = window_sum(KEYS[3 * p - 1], now_bucket - window_buckets, W.oldest, W.bucket)
  end
  return before[k] + granted[p]
end

-- When enough usage leaves the window for `amount` to fit under `limit`.
local function retry_after(p, window_buckets, usage, amount, limit)
  local first = now_bucket - window_buckets
  local entries = {}
  local kv = redis.call('HGETALL', KEYS[3 * p - 1])
  for i = 1, #kv, 2 do
    local index = tonumber(kv[i])
    if index and index >= first then
      entries[#entries + 1] = {index, tonumber(kv[i + 1])}
    end
  end
  if granted[p] ~= 0 then
    entries[#entries + 1] = {now_bucket, granted[p]}
  end
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  local freed = 0
  for _, entry in ipairs(entries) do
    freed = freed + entry[2]
    if usage - freed + amount <= limit + 1e-9 then
      return math.max(1, (entry[1] + window_buckets + 1) * bucket_ms - now_ms)
    end
  end
  return window_buckets * bucket_ms
end

local out = {}
-- HSET arguments: id, '1' per granted request that carries an id.
local marked = {}
local at = 13
for r = 1, requests do
  local id = ARGV[at]
  local amounts = {}
  local n_amounts = tonumber(ARGV[at + 1])
  at = at + 2
  for _ = 1, n_amounts do
    amounts[tonumber(ARGV[at])] = tonumber(ARGV[at + 1])
    at = at + 2
  end
  local n_checks = tonumber(ARGV[at])
  at = at + 1
  local denial = nil
  for c = 1, n_checks do
    local p, limit, window_buckets = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    at = at + 3
    if denial == nil then
      local usage, amount = used(p, window_buckets), amounts[p]
      if usage + amount > limit + 1e-9 then
        local wait = retry_after(p, window_buckets, usage, amount, limit)
        denial = {0, c, string.format('%.17g', usage), wait}
      end
    end
  end
  if denial then
    out[r] = denial
  else
    for p, amount in pairs(amounts) do
      granted[p] = granted[p] + amount
      touched[p] = true
    end
    if id ~= '' then
      marked[#marked + 1] = id
      marked[#marked + 1] = '1'
    end
    out[r] = {1}
  end
end

for p = 1, metrics do
  if touched[p] then
    apply(KEYS[3 * p - 2], KEYS[3 * p - 1], KEYS[3 * p], granted[p])
  end
end
if #marked > 0 then
  local markers = KEYS[3 * metrics + 1]
  redis.call('HSET', markers, unpack(marked))
  redis.call('PEXPIRE', markers, markers_ttl)
end
return out
