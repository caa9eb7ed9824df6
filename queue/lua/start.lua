-- Starts the jobs of entries delivered by a blocking XREADGROUP.
-- ARGV: base, group, consumer, now_us, then pairs (entry id, job id).
local out = {}
for i = 5, #ARGV, 2 do
  start(ARGV[1], KEYS[1], ARGV[2], ARGV[3], ARGV[4], ARGV[i], ARGV[i + 1], out)
end
flush(ARGV[1])
return out
