-- Moves due delayed and retrying jobs into the stream, and retires finished jobs past their
-- retention (so an idle queue ages them too).
-- ARGV: base, now_us, limit, keep_s, keep_dead_s, keep_count, tenant window, tenant cap. Returns {moved, next due score or -1}.
local base, now, limit = ARGV[1], ARGV[2], ARGV[3]
TEN.window, TEN.cap = tonumber(ARGV[7]), tonumber(ARGV[8])
local delayed = base .. ':delayed'
local ids = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  redis.call('ZREM', delayed, id)
  local jk = jkey(base, id)
  local f = redis.call('HMGET', jk, 'kind', 'state', 'enq', 'pri', 'ten')
  if f[1] and (f[2] == 'scheduled' or f[2] == 'retrying') then
    redis.call('HSET', jk, 'state', 'queued')
    enter(base, id, f[4], f[5])
    move(base, f[1], f[2], 'queued', id, f[3])
  end
end
local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
flush(ARGV[1])
retire(base, now, ARGV[4], ARGV[5], ARGV[6])
return {#ids, nxt[2] or '-1'}
