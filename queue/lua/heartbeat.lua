-- Proves this worker alive and keeps its running entries from looking abandoned.
-- ARGV: base, group, consumer, now_ms, n, then n entry ids, then n job ids.
-- Returns the job ids an operator asked to cancel.
local base, group, consumer, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('ZADD', base .. ':workers', now, consumer)
local cancel = {}
if n == 0 then return cancel end
-- JUSTID resets idle time without counting a delivery; entries no longer pending are ignored.
-- One XCLAIM per priority's stream. (Arguments are built in one table: Lua expands unpack()
-- only in the last position.)
local by = {}
for i = 1, n do
  local s, raw = split(base, ARGV[5 + i])
  local args = by[s]
  if not args then args = {s, group, consumer, 0}; by[s] = args end
  args[#args + 1] = raw
end
for _, args in pairs(by) do
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
for i = 1, n do
  local id = ARGV[5 + n + i]
  if redis.call('HGET', jkey(base, id), 'cancel') == '1' then cancel[#cancel + 1] = id end
end
return cancel
