-- Puts a job back in the queue with fresh attempts: a dead or cancelled job (or one Redis
-- lost, rebuilt from the durable record), or a delayed one to run now.
-- ARGV: base, now_us, id, kind, args, max_attempts, key, owner, priority, tenant, tenant window,
-- tenant cap. An empty priority or tenant keeps the job's own.
-- Returns: requeued | now | the state that prevents it (queued, running, succeeded).
local base, now, id, kind, args, max, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local owner = ARGV[8]
TEN.window, TEN.cap = tonumber(ARGV[11]), tonumber(ARGV[12])
local jk = jkey(base, id)
local f = redis.call('HMGET', jk, 'state', 'pri', 'ten')
local state = f[1]
local pri, t = ARGV[9], ARGV[10]
if pri == '' then pri = f[2] or '' end
if t == '' then t = f[3] or '' end
if state == 'scheduled' or state == 'retrying' then
  redis.call('ZADD', base .. ':delayed', now, id)
  return 'now'
end
if state == 'queued' or state == 'running' or state == 'succeeded' then return state end
redis.call('DEL', jk)
redis.call('HSET', jk, 'kind', kind, 'args', args, 'attempts', 0, 'max', max, 'state', 'queued',
  'enq', now, 'run_at', now, 'key', key, 'owner', owner, 'pri', pri, 'ten', t)
redis.call('PERSIST', ekey(base, id))
enter(base, id, pri, t)
move(base, kind, state, 'queued', id, now)
flush(ARGV[1])
return 'requeued'
