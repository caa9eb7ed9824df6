-- Puts a job back in the queue with fresh attempts: a dead or cancelled job (or one Redis
-- lost, rebuilt from the durable record), or a delayed one to run now.
-- ARGV: base, now_us, id, kind, args, max_attempts, key, owner.
-- Returns: requeued | now | the state that prevents it (queued, running, succeeded).
local base, now, id, kind, args, max, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local owner = ARGV[8]
local jk = jkey(base, id)
local state = redis.call('HGET', jk, 'state')
if state == 'scheduled' or state == 'retrying' then
  redis.call('ZADD', base .. ':delayed', now, id)
  return 'now'
end
if state == 'queued' or state == 'running' or state == 'succeeded' then return state end
redis.call('DEL', jk)
redis.call('HSET', jk, 'kind', kind, 'args', args, 'attempts', 0, 'max', max, 'state', 'queued',
  'enq', now, 'run_at', now, 'key', key, 'owner', owner)
redis.call('PERSIST', ekey(base, id))
redis.call('XADD', KEYS[1], '*', 'id', id)
move(base, kind, state, 'queued', id, now)
flush(ARGV[1])
return 'requeued'
