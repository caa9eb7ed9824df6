-- Reads up to COUNT new entries without blocking and starts their jobs in the same step.
-- ARGV: base, group, consumer, count, now_us. Returns 8 fields per started job (see start).
local r = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
local out = {}
if not r then return out end
for _, e in ipairs(r[1][2]) do
  start(ARGV[1], KEYS[1], ARGV[2], ARGV[3], ARGV[5], e[1], e[2][2], out)
end
flush(ARGV[1])
return out
