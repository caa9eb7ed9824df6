-- ARGV: base, job id, now_us, keep_s. Cancels a waiting job at once; asks a running one to
-- stop. Returns the outcome: cancelled | requested | missing | the final state it already has.
local base, id, now, keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local jk = jkey(base, id)
local f = redis.call('HMGET', jk, 'kind', 'state')
if not f[1] then return 'missing' end
local state = f[2]
if state == 'queued' or state == 'scheduled' or state == 'retrying' then
  redis.call('ZREM', base .. ':delayed', id)
  redis.call('HSET', jk, 'state', 'cancelled', 'finished', now)
  redis.call('EXPIRE', jk, keep)
  move(base, f[1], state, 'cancelled', id, now)
  flush(base)
  return 'cancelled'
elseif state == 'running' then
  redis.call('HSET', jk, 'cancel', '1')
  return 'requested'
end
return state
