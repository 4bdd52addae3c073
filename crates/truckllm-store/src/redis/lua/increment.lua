
-- Adds deltas to several metrics of one provider key, atomically.
-- KEYS: counter_1, buckets_1, rollup_1, counter_2, buckets_2, rollup_2, ...
-- ARGV: the 7 write arguments (see read_write_args), then delta_1, delta_2, ...
-- Returns the counters' new values.
read_write_args(1)
local out = {}
for i = 1, #KEYS / 3 do
  out[i] = apply(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[7 + i])
end
return out
