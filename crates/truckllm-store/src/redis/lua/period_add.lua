-- Adds deltas to period counters of one provider key, atomically, at most once per batch id
-- if one is given. An add whose counter's expiry is at or before now changes nothing (the
-- counter is gone or about to be).
-- KEYS: the h applied-id hashes to look in, the current marker generation's first (see
--       MarkerGenerations in keys.rs; none without a batch id), then one counter per add.
-- ARGV: batch id ('' for none), the current hash's TTL (ms), h, now_ms, then per add:
--       delta, expires_at_ms ('' never).
-- Returns 1 if applied, 0 if the batch id was seen before.
local id = ARGV[1]
local hashes = tonumber(ARGV[3])
local now_ms = tonumber(ARGV[4])
if id ~= '' then
  for h = 1, hashes do
    if redis.call('HEXISTS', KEYS[h], id) == 1 then
      return 0
    end
  end
  redis.call('HSET', KEYS[1], id, '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
for i = 1, #KEYS - hashes do
  local counter = KEYS[hashes + i]
  local delta, expires = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if expires == '' then
    redis.call('INCRBYFLOAT', counter, delta)
    redis.call('PERSIST', counter)
  elseif tonumber(expires) > now_ms then
    redis.call('INCRBYFLOAT', counter, delta)
    redis.call('PEXPIREAT', counter, expires)
  end
end
return 1
