-- Re-queues the jobs of workers that stopped heartbeating (killed, frozen, lost).
-- ARGV: base, group, consumer, now_ms, idle_ms, count, tenant window, tenant cap. Returns the
-- number re-queued.
local base, group, me, now, idle, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
TEN.window, TEN.cap = tonumber(ARGV[7]), tonumber(ARGV[8])
local recovered = 0
for _, pri in ipairs({'', 'high', 'low'}) do
  local stream = skey(base, pri)
  -- pcall: a priority's stream that no worker has created yet holds nothing.
  local res = redis.pcall('XAUTOCLAIM', stream, group, me, idle, '0-0', 'COUNT', count)
  if type(res) == 'table' and not res.err then
    for _, e in ipairs(res[2]) do
      local eid, fields = tag(pri, e[1]), e[2]
      local gone = redis.call('XACK', stream, group, e[1]) == 1
      if fields then
        local id = fields[2]
        local jk = jkey(base, id)
        local f = redis.call('HMGET', jk, 'kind', 'state', 'eid', 'worker', 'attempts', 'enq', 'pri', 'ten')
        local t = f[8] or ''
        local requeue = f[1] and f[2] == 'queued'
        if f[1] and f[2] == 'running' and f[3] == eid then
          requeue = true
          local text = 'worker ' .. (f[4] or '?') .. ' stopped heartbeating during this attempt; job re-queued'
          redis.call('RPUSH', ekey(base, id), cjson.encode({attempt = tonumber(f[5]), at = now, error = text, worker = f[4] or ''}))
          redis.call('HSET', jk, 'last_error', text)
        end
        if requeue then
          -- The new entry replaces the old one: a tenant's count stays as it was.
          if gone and t ~= '' then tadd(t, -1) end
          redis.call('HSET', jk, 'state', 'queued', 'eid', '', 'worker', '')
          xadd(base, id, f[7], t)
          move(base, f[1], f[2], 'queued', id, f[6])
          redis.call('HINCRBY', base .. ':stats', f[1] .. '|recovered', 1)
          recovered = recovered + 1
        elseif gone and t ~= '' then
          released(base, t, 1)
        end
      end
    end
  end
end
-- Forget workers silent for long whose entries are all recovered.
local gone = redis.call('ZRANGEBYSCORE', base .. ':workers', '-inf', now - tonumber(idle))
for _, w in ipairs(gone) do
  if w ~= me then
    local pending = 0
    for _, pri in ipairs({'', 'high', 'low'}) do
      local p = redis.pcall('XPENDING', skey(base, pri), group, '-', '+', 1, w)
      if type(p) == 'table' and not p.err then pending = pending + #p end
    end
    if pending == 0 then
      redis.call('ZREM', base .. ':workers', w)
      for _, pri in ipairs({'', 'high', 'low'}) do
        redis.pcall('XGROUP', 'DELCONSUMER', skey(base, pri), group, w)
      end
    end
  end
end
flush(base)
return recovered
