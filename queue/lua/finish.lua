-- Records the outcomes of finished attempts and acknowledges their entries in one step.
-- ARGV: base, group, now_us, keep_s, keep_dead_s, keep_count, tenant window, tenant cap, n, then
-- n x (entry id, job id, outcome, run_at_us, error_json, error_text). outcome: succeeded | dead | cancelled (final),
-- retrying (spends the attempt) | scheduled (gives the attempt back: snooze, shutdown).
-- A job whose entry id no longer matches was re-queued after its worker went silent: the
-- late result is dropped, the new attempt owns the job.
local base, group, now, keep, keepdead, cap, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[9])
TEN.window, TEN.cap = tonumber(ARGV[7]), tonumber(ARGV[8])
local eids, tenants, mine = {}, {}, {}
for j = 0, n - 1 do
  local o = 10 + j * 6
  local eid, id, outcome, run_at, err, text = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5]
  local jk = jkey(base, id)
  local f = redis.call('HMGET', jk, 'kind', 'state', 'eid', 'attempts', 'started', 'enq', 'ten')
  local t = f[7]
  eids[#eids + 1] = eid
  tenants[#tenants + 1] = t or ''
  mine[#mine + 1] = f[1] and f[2] == 'running' and f[3] == eid
  if mine[#mine] then
    observe(f[1], 'duration', tonumber(now) - (tonumber(f[5]) or tonumber(now)))
    -- Successes are counted by the state counts (`succeeded` never goes down); these can.
    if outcome == 'dead' or outcome == 'retrying' then count(f[1], outcome) end
    if err ~= '' and outcome ~= 'cancelled' then count(f[1], 'failed') end
    if err ~= '' then
      redis.call('RPUSH', ekey(base, id), err)
      redis.call('HSET', jk, 'last_error', text)
    end
    -- Emptied rather than deleted: one HSET per job instead of HSET plus HDEL. No EXPIRE:
    -- `trim` below retires finished jobs by count and age through their state's index.
    local score = now
    if outcome == 'succeeded' or outcome == 'dead' or outcome == 'cancelled' then
      redis.call('HSET', jk, 'state', outcome, 'finished', now, 'eid', '', 'cancel', '')
    else
      score = f[6]
      local attempts = tonumber(f[4])
      if outcome == 'scheduled' then attempts = attempts - 1 end
      redis.call('HSET', jk, 'state', outcome, 'run_at', run_at, 'attempts', attempts,
        'eid', '', 'worker', '', 'cancel', '')
      redis.call('ZADD', base .. ':delayed', run_at, id)
    end
    move(base, f[1], 'running', outcome, id, score)
  end
end
-- After the outcomes: a tenant's next jobs are admitted behind what is already waiting.
if #eids > 0 then xack_all(base, group, eids, tenants, mine) end
flush(base)
retire(base, now, keep, keepdead, cap)
return #eids
