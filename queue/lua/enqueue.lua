-- ARGV: base, now_us, idempotency_ttl_s, tenant window, tenant cap, n, then n x (id, kind, args,
-- run_at_us, max_attempts, key, coalesce, owner, priority, tenant). Returns n x (id, created "1"/"0"): an existing idempotency key returns the
-- first job's id; a coalesce key returns the id of its job while that job still waits.
local base, now, ttl, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[6])
TEN.window, TEN.cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for j = 0, n - 1 do
  local o = 7 + j * 10
  local id, kind, args, run_at, max, key, co, owner = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5], ARGV[o + 6], ARGV[o + 7]
  local pri, t = ARGV[o + 8], ARGV[o + 9]
  local existing = false
  if co ~= '' then
    local ck = base .. ':co:' .. co
    local cur = redis.call('GET', ck)
    if cur then
      local st = redis.call('HGET', jkey(base, cur), 'state')
      if st == 'queued' or st == 'scheduled' or st == 'retrying' then existing = cur end
    end
    if not existing then redis.call('SET', ck, id, 'EX', ttl) end
  end
  if not existing and key ~= '' then
    local ik = base .. ':idem:' .. key
    existing = redis.call('GET', ik)
    if not existing then redis.call('SET', ik, id, 'EX', ttl) end
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = '0'
  else
    local state = 'queued'
    if tonumber(run_at) > now then state = 'scheduled' end
    -- Priority and tenant only when given, so plain jobs keep their hash as small as before.
    if pri == '' and t == '' then
      redis.call('HSET', jkey(base, id), 'kind', kind, 'args', args, 'attempts', 0, 'max', max,
        'state', state, 'enq', ARGV[2], 'run_at', run_at, 'key', key, 'co', co, 'owner', owner)
    else
      redis.call('HSET', jkey(base, id), 'kind', kind, 'args', args, 'attempts', 0, 'max', max,
        'state', state, 'enq', ARGV[2], 'run_at', run_at, 'key', key, 'co', co, 'owner', owner,
        'pri', pri, 'ten', t)
    end
    if state == 'queued' then
      enter(base, id, pri, t)
    else
      redis.call('ZADD', base .. ':delayed', run_at, id)
    end
    move(base, kind, false, state, id, ARGV[2])
    out[#out + 1] = id
    out[#out + 1] = '1'
  end
end
flush(ARGV[1])
return out
