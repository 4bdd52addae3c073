-- Sum of a series' buckets from index ARGV[1] on.
-- KEYS: buckets. Returns the sum as a string with full float precision.
local first = tonumber(ARGV[1])
local sum = 0
local kv = redis.call('HGETALL', KEYS[1])
for i = 1, #kv, 2 do
  if tonumber(kv[i]) >= first then
    sum = sum + tonumber(kv[i + 1])
  end
end
return string.format('%.17g', sum)
