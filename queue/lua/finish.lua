-- Records the outcomes of finished attempts and acknowledges their entries in one step.
-- ARGV: base, group, now_us, keep_s, keep_dead_s, keep_count, tenant window, tenant cap, n, then
-- n x (entry id, job id, outcome, run_at_us, error_json, error_text, kind, attempt, enqueued_us,
-- started_us, tenant). outcome: succeeded | dead | cancelled (final), retrying (spends the
-- attempt) | scheduled (gives the attempt back: snooze, shutdown). The worker sends what it
-- got at the start (kind to tenant) so only the entry id is read here: a job's `eid` is this
-- entry exactly while this attempt runs (every other move empties it). A job whose entry id
-- no longer matches was re-queued after its worker went silent: the late result is dropped,
-- the new attempt owns the job.
local base, group, now, keep, keepdead, cap, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[9])
TEN.window, TEN.cap = tonumber(ARGV[7]), tonumber(ARGV[8])
local eids, tenants, mine = {}, {}, {}
for j = 0, n - 1 do
  local o = 10 + j * 11
  local eid, id, outcome, run_at, err, text = ARGV[o], ARGV[o + 1], ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], ARGV[o + 5]
  local kind, attempt, enq, started = ARGV[o + 6], ARGV[o + 7], ARGV[o + 8], ARGV[o + 9]
  local jk = jkey(base, id)
  eids[#eids + 1] = eid
  tenants[#tenants + 1] = ARGV[o + 10]
  mine[#mine + 1] = redis.call('HGET', jk, 'eid') == eid
  if mine[#mine] then
    observe(kind, 'duration', tonumber(now) - tonumber(started))
    -- Successes are counted by the state counts (`succeeded` never goes down); these can.
    if outcome == 'dead' or outcome == 'retrying' then count(kind, outcome) end
    if err ~= '' and outcome ~= 'cancelled' then count(kind, 'failed') end
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
      score = enq
      local attempts = tonumber(attempt)
      if outcome == 'scheduled' then attempts = attempts - 1 end
      redis.call('HSET', jk, 'state', outcome, 'run_at', run_at, 'attempts', attempts,
        'eid', '', 'worker', '', 'cancel', '')
      redis.call('ZADD', base .. ':delayed', run_at, id)
    end
    move(base, kind, 'running', outcome, id, score)
  end
end
-- After the outcomes: a tenant's next jobs are admitted behind what is already waiting.
if #eids > 0 then xack_all(base, group, eids, tenants, mine) end
flush(base)
retire(base, now, keep, keepdead, cap)
return #eids
