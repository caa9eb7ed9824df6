-- Starts the jobs of entries delivered by a blocking XREADGROUP.
-- ARGV: base, group, consumer, now_us, tenant window, tenant cap, then pairs (entry id with its
-- stream's prefix, job id). On a paused queue the entries go back, each to the end of its
-- stream, and the reply is {'paused'}.
local base, group = ARGV[1], ARGV[2]
TEN.window, TEN.cap = tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('EXISTS', base .. ':paused') == 1 then
  for i = 7, #ARGV, 2 do
    local s, raw = split(base, ARGV[i])
    if redis.call('XACK', s, group, raw) == 1 then redis.call('XADD', s, '*', 'id', ARGV[i + 1]) end
  end
  return {'paused'}
end
local out = {}
for i = 7, #ARGV, 2 do
  start(base, group, ARGV[3], ARGV[4], ARGV[i], ARGV[i + 1], out)
end
flush(base)
return out
