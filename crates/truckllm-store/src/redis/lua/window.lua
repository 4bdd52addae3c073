
-- Sum of a series' buckets from index ARGV[1] on.
-- KEYS: buckets. ARGV: first bucket, oldest kept bucket, current bucket.
-- Returns the sum as a string with full float precision.
local sum = window_sum(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
return string.format('%.17g', sum)
