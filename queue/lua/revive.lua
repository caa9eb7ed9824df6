-- Re-queues a job recorded as running whose worker is gone and whose stream entry is no
-- longer pending (deleted or lost), so the queue's own reclaim can never find it. The run
-- reconciler calls it for runs whose heartbeat stopped.
-- ARGV: base, group, id, now_ms, alive_after_ms (a worker seen after this is alive).
-- Returns: requeued | missing | alive | pending | the job's state when not running.
local base, group, id, now, alive_after = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local jk = jkey(base, id)
local f = redis.call('HMGET', jk, 'kind', 'state', 'worker', 'eid', 'attempts', 'enq', 'pri', 'ten')
if not f[1] then return 'missing' end
if f[2] ~= 'running' then return f[2] end
local worker = f[3] or ''
if worker ~= '' then
  local seen = redis.call('ZSCORE', base .. ':workers', worker)
  if seen and tonumber(seen) > alive_after then return 'alive' end
end
if f[4] and f[4] ~= '' then
  -- pcall: a stream or group that is gone holds nothing pending.
  local s, raw = split(base, f[4])
  local p = redis.pcall('XPENDING', s, group, raw, raw, 1)
  if type(p) == 'table' and not p.err and #p > 0 then return 'pending' end
end
local text = 'worker ' .. worker .. ' is gone and Redis lost the job\'s stream entry; re-queued by the run reconciler'
redis.call('RPUSH', ekey(base, id), cjson.encode({attempt = tonumber(f[5]), at = tonumber(now), error = text, worker = worker}))
redis.call('HSET', jk, 'state', 'queued', 'eid', '', 'worker', '', 'last_error', text)
local t = f[8] or ''
if t ~= '' then trun[t] = (trun[t] or 0) - 1 end
xadd(base, id, f[7], t)
move(base, f[1], 'running', 'queued', id, f[6])
redis.call('HINCRBY', base .. ':stats', f[1] .. '|recovered', 1)
flush(base)
return 'requeued'
