-- Proves this worker alive and keeps its running entries from looking abandoned.
-- ARGV: base, group, consumer, now_ms, n, then n entry ids, then n job ids.
-- Returns the job ids an operator asked to cancel.
local base, group, consumer, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('ZADD', base .. ':workers', now, consumer)
local cancel = {}
if n == 0 then return cancel end
-- JUSTID resets idle time without counting a delivery; entries no longer pending are ignored.
-- (Arguments are built in one table: Lua expands unpack() only in the last position.)
local args = {KEYS[1], group, consumer, 0}
for i = 1, n do args[#args + 1] = ARGV[5 + i] end
args[#args + 1] = 'JUSTID'
redis.call('XCLAIM', unpack(args))
for i = 1, n do
  local id = ARGV[5 + n + i]
  if redis.call('HGET', jkey(base, id), 'cancel') == '1' then cancel[#cancel + 1] = id end
end
return cancel
