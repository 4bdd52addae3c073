-- Reserves against period counters of one provider key (see period.rs): every check sums its
-- counted counters; only if every check fits (sum + amount <= limit) is each amount added to
-- its write counter, whose expiry is then set (PEXPIREAT) or removed (PERSIST). Atomic.
-- A counter whose expiry has passed is gone (Redis expires it), so it sums as 0.
-- KEYS: per check, its counted counters, then its write counter.
-- ARGV: check count, then per check: limit, amount, counted count, expires_at_ms ('' never).
-- Returns {1} when granted, or {0, check_number (1-based), used}.
local checks = tonumber(ARGV[1])
local writes = {}
local at, k = 2, 1
for c = 1, checks do
  local limit, amount, n = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local used = 0
  for i = k, k + n - 1 do
    used = used + tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  if used + amount > limit + 1e-9 then
    return {0, c, string.format('%.17g', used)}
  end
  writes[c] = {KEYS[k + n], ARGV[at + 1], ARGV[at + 3]}
  at = at + 4
  k = k + n + 1
end
for _, w in ipairs(writes) do
  redis.call('INCRBYFLOAT', w[1], w[2])
  if w[3] == '' then
    redis.call('PERSIST', w[1])
  else
    redis.call('PEXPIREAT', w[1], w[3])
  end
end
return {1}
