-- Proves this worker alive and keeps its running entries from looking abandoned.
-- ARGV: base, group, consumer, now_ms, n, then n entry ids, then n job ids.
-- Returns the job ids an operator asked to cancel.
local base, group, consumer, now, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('ZADD', base .. ':workers', now, consumer)
local cancel = {}
if n == 0 then return cancel end
local eids = {}
for i = 1, n do eids[i] = ARGV[5 + i] end
-- JUSTID resets idle time without counting a delivery; entries no longer pending are ignored.
redis.call('XCLAIM', KEYS[1], group, consumer, 0, unpack(eids), 'JUSTID')
for i = 1, n do
  local id = ARGV[5 + n + i]
  if redis.call('HGET', jkey(base, id), 'cancel') == '1' then cancel[#cancel + 1] = id end
end
return cancel
