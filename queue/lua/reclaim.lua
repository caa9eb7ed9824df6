-- Re-queues the jobs of workers that stopped heartbeating (killed, frozen, lost).
-- ARGV: base, group, consumer, now_ms, idle_ms, count. Returns the number re-queued.
local base, group, me, now, idle, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local stream = KEYS[1]
local res = redis.call('XAUTOCLAIM', stream, group, me, idle, '0-0', 'COUNT', count)
local recovered = 0
for _, e in ipairs(res[2]) do
  local eid, fields = e[1], e[2]
  redis.call('XACK', stream, group, eid)
  redis.call('XDEL', stream, eid)
  if fields then
    local id = fields[2]
    local jk = jkey(base, id)
    local f = redis.call('HMGET', jk, 'kind', 'state', 'eid', 'worker', 'attempts', 'enq')
    local requeue = f[1] and f[2] == 'queued'
    if f[1] and f[2] == 'running' and f[3] == eid then
      requeue = true
      local text = 'worker ' .. (f[4] or '?') .. ' stopped heartbeating during this attempt; job re-queued'
      redis.call('RPUSH', ekey(base, id), cjson.encode({attempt = tonumber(f[5]), at = now, error = text, worker = f[4] or ''}))
      redis.call('HSET', jk, 'last_error', text)
    end
    if requeue then
      redis.call('HSET', jk, 'state', 'queued')
      redis.call('HSET', jk, 'eid', '', 'worker', '')
      redis.call('XADD', stream, '*', 'id', id)
      move(base, f[1], f[2], 'queued', id, f[6])
      redis.call('HINCRBY', base .. ':stats', f[1] .. '|recovered', 1)
      recovered = recovered + 1
    end
  end
end
-- Forget workers silent for long whose entries are all recovered.
local gone = redis.call('ZRANGEBYSCORE', base .. ':workers', '-inf', now - tonumber(idle))
for _, w in ipairs(gone) do
  if w ~= me then
    local pending = redis.call('XPENDING', stream, group, '-', '+', 1, w)
    if #pending == 0 then
      redis.call('ZREM', base .. ':workers', w)
      redis.call('XGROUP', 'DELCONSUMER', stream, group, w)
    end
  end
end
flush(ARGV[1])
return recovered
