-- Shared by every ferry script. KEYS[1] is the queue's stream; the other keys of a queue
-- share its hash tag (ARGV[1] is the key base, e.g. "ferry:{default}"), so a Redis Cluster
-- keeps a queue in one slot.
local function jkey(base, id) return base .. ':job:' .. id end
local function ekey(base, id) return base .. ':err:' .. id end

-- Keeps the per-kind state counters of `ferry stats` in step with each job's state. Changes
-- are summed per script and written once by `flush`, so a batch of 500 jobs of one kind costs
-- two HINCRBYs, not a thousand.
local deltas = {}
-- The per-state indexes `base:idx:STATE` (sorted sets of job ids) that listing reads instead
-- of scanning: score is the enqueue time for waiting and running jobs, the finish time for
-- finished ones (so retention by age reads the index). Batched like the counts: one ZREM and
-- one ZADD per state and script. A job moved twice in one script keeps only its last state.
local idx_add, idx_rem = {}, {}
local function move(base, kind, prev, new, id, score)
  if prev == new then return end
  if prev then
    deltas[kind .. '|' .. prev] = (deltas[kind .. '|' .. prev] or 0) - 1
    local added = idx_add[prev]
    if added and added[id] then
      added[id] = nil
    else
      local r = idx_rem[prev]
      if not r then r = {}; idx_rem[prev] = r end
      r[id] = true
    end
  end
  deltas[kind .. '|' .. new] = (deltas[kind .. '|' .. new] or 0) + 1
  local a = idx_add[new]
  if not a then a = {}; idx_add[new] = a end
  a[id] = score
end
-- Counters and histograms for /metrics (`ferry serve` runs apart from workers, so what workers
-- observe is kept here): fields `kind|name` (counters) and `kind|hist|bucket`, `kind|hist|sum_us`
-- in `base:metrics`, summed per script and written by `flush` like the state counts. Per job
-- only table updates happen (no string building); field names are made once per flush.
-- Bucket bounds in µs; queue/src/metrics.rs holds the same list in ms.
local BOUNDS_US = {1e3, 5e3, 25e3, 1e5, 5e5, 1e6, 5e6, 3e7, 1.2e8, 6e8, 3.6e9}
local counts, hists = {}, {}
local function count(kind, name)
  local c = counts[kind]
  if not c then c = {}; counts[kind] = c end
  c[name] = (c[name] or 0) + 1
end
local function observe(kind, hist, us)
  if us < 0 then us = 0 end
  local bucket = #BOUNDS_US + 1
  for i = 1, #BOUNDS_US do
    if us <= BOUNDS_US[i] then bucket = i break end
  end
  local k = hists[kind]
  if not k then k = {}; hists[kind] = k end
  local h = k[hist]
  if not h then h = {sum = 0}; k[hist] = h end
  h[bucket] = (h[bucket] or 0) + 1
  h.sum = h.sum + us
end
local function flush(base)
  for state, ids in pairs(idx_rem) do
    local args = {}
    for id in pairs(ids) do args[#args + 1] = id end
    if #args > 0 then redis.call('ZREM', base .. ':idx:' .. state, unpack(args)) end
  end
  for state, ids in pairs(idx_add) do
    local args = {}
    for id, score in pairs(ids) do
      args[#args + 1] = score
      args[#args + 1] = id
    end
    if #args > 0 then redis.call('ZADD', base .. ':idx:' .. state, unpack(args)) end
  end
  idx_add, idx_rem = {}, {}
  for field, d in pairs(deltas) do
    if d ~= 0 then redis.call('HINCRBY', base .. ':stats', field, d) end
  end
  local mk = base .. ':metrics'
  for kind, c in pairs(counts) do
    for name, n in pairs(c) do redis.call('HINCRBY', mk, kind .. '|' .. name, n) end
  end
  for kind, k in pairs(hists) do
    for hist, h in pairs(k) do
      for bucket, n in pairs(h) do
        if bucket == 'sum' then
          redis.call('HINCRBY', mk, kind .. '|' .. hist .. '|sum_us', n)
        else
          redis.call('HINCRBY', mk, kind .. '|' .. hist .. '|' .. bucket, n)
        end
      end
    end
  end
end

-- Marks a delivered stream entry's job running and appends it to `out`; a stale entry (its
-- job cancelled, finished or gone) is acknowledged and dropped.
local function start(base, stream, group, consumer, now, eid, id, out)
  local jk = jkey(base, id)
  local f = redis.call('HMGET', jk, 'kind', 'args', 'max', 'state', 'enq', 'key', 'attempts', 'co', 'run_at')
  if not f[1] or f[4] ~= 'queued' then
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
    return
  end
  -- Once a coalesced job starts it reads current state; later changes need a new job.
  if f[8] and f[8] ~= '' then
    local ck = base .. ':co:' .. f[8]
    if redis.call('GET', ck) == id then redis.call('DEL', ck) end
  end
  local attempt = (tonumber(f[7]) or 0) + 1
  redis.call('HSET', jk, 'attempts', attempt, 'state', 'running', 'started', now, 'worker', consumer, 'eid', eid)
  move(base, f[1], 'queued', 'running', id, f[5])
  -- Waiting counts from when the job was due: its enqueue, or its scheduled or retry time.
  -- Its histogram's count is also the number of attempts started.
  observe(f[1], 'wait', tonumber(now) - (tonumber(f[9]) or tonumber(f[5]) or tonumber(now)))
  local n = #out
  out[n + 1] = eid
  out[n + 2] = id
  out[n + 3] = f[1]
  out[n + 4] = f[2]
  out[n + 5] = tostring(attempt)
  out[n + 6] = f[3]
  out[n + 7] = f[5]
  out[n + 8] = f[6] or ''
end

-- Retention of finished jobs: each final state's index keeps at most `cap` jobs, none
-- finished before `oldest_us`; what falls out is deleted with its error list. At most `limit`
-- per call, so one call never stalls Redis; busy queues call it with every finish.
local function trim(base, state, cap, oldest_us, limit)
  local key = base .. ':idx:' .. state
  local gone = {}
  local excess = redis.call('ZCARD', key) - cap
  if excess > 0 then
    local popped = redis.call('ZPOPMIN', key, math.min(excess, limit))
    for i = 1, #popped, 2 do gone[#gone + 1] = popped[i] end
  end
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', string.format('(%d', oldest_us), 'LIMIT', 0, limit)
  if #old > 0 then
    redis.call('ZREM', key, unpack(old))
    for _, id in ipairs(old) do gone[#gone + 1] = id end
  end
  if #gone == 0 then return 0 end
  local dels = {}
  for _, id in ipairs(gone) do
    dels[#dels + 1] = jkey(base, id)
    dels[#dels + 1] = ekey(base, id)
  end
  redis.call('UNLINK', unpack(dels))
  return #gone
end

-- Retention of every final state; ARGV strings: now_us, keep_s, keep_dead_s, keep_count.
local function retire(base, now, keep, keepdead, cap)
  local t, cap = tonumber(now), tonumber(cap)
  trim(base, 'succeeded', cap, t - tonumber(keep) * 1e6, 1000)
  trim(base, 'cancelled', cap, t - tonumber(keep) * 1e6, 1000)
  trim(base, 'dead', cap, t - tonumber(keepdead) * 1e6, 1000)
end
