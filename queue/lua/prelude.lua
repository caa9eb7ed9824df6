-- Shared by every ferry script. KEYS[1] is the queue's stream; the other keys of a queue
-- share its hash tag (ARGV[1] is the key base, e.g. "ferry:{default}"), so a Redis Cluster
-- keeps a queue in one slot.
local function jkey(base, id) return base .. ':job:' .. id end
local function ekey(base, id) return base .. ':err:' .. id end

-- Priorities: each has its own stream (`base:stream`, `base:stream:high`, `base:stream:low`),
-- read in order by fetch. A worker's entry string names its stream by a prefix letter ('h',
-- 'l'; none for default), so acking, claiming and reviving need nothing but the string.
local function skey(base, pri)
  if pri == 'high' then return base .. ':stream:high' end
  if pri == 'low' then return base .. ':stream:low' end
  return base .. ':stream'
end
local function split(base, e)
  local c = string.byte(e, 1)
  if c == 104 then return base .. ':stream:high', string.sub(e, 2) end
  if c == 108 then return base .. ':stream:low', string.sub(e, 2) end
  return base .. ':stream', e
end
local function tag(pri, raw)
  if pri == 'high' then return 'h' .. raw end
  if pri == 'low' then return 'l' .. raw end
  return raw
end

-- Tenants. A tenant's jobs are "admitted" (given a stream entry) only while the tenant has
-- fewer than `window` entries in the streams (ready or running); the rest wait in the
-- tenant's backlog list `base:tq:T`, and tenants with a backlog are in the ring `base:tring`.
-- A tenant's entries that finish let its next jobs in at the stream's end (a batch once it
-- is down to half its window), so the streams interleave tenants and a big tenant cannot
-- fill them ahead of a small one. When the streams run dry, fetch admits from the ring
-- round-robin (work-conserving), never past a tenant's hard cap `max_running` (0 = none).
-- `base:tadm` counts entries per tenant: +1 on every XADD of a tenant's entry, -1 on every
-- XACK that acknowledged one; changes are summed per script (`tdelta`) and written by `flush`.
local TEN = {window = 0, cap = 0}
local tbase, tdelta, tpush = {}, {}, {}
local function admitted(base, t)
  local b = tbase[t]
  if b == nil then
    b = tonumber(redis.call('HGET', base .. ':tadm', t) or '0')
    tbase[t] = b
  end
  return b + (tdelta[t] or 0)
end
local function tadd(t, d)
  tdelta[t] = (tdelta[t] or 0) + d
end
-- Gives a queued job a stream entry of its priority.
local function xadd(base, id, pri, t)
  redis.call('XADD', skey(base, pri), '*', 'id', id)
  if t and t ~= '' then tadd(t, 1) end
end
-- A tenant's limit on entries: its window, or its hard cap when that is lower.
local function tlimit(pri)
  local limit = TEN.window
  if pri == 'high' then limit = 0 end
  if TEN.cap > 0 and (limit == 0 or TEN.cap < limit) then limit = TEN.cap end
  return limit
end
-- A queued job enters its priority's stream, or its tenant's backlog when the tenant is at
-- its limit. High-priority jobs pass the window (not the hard cap). Backlog items are the id
-- tagged with the priority's letter, so admitting one needs no read of the job.
local function enter(base, id, pri, t)
  if t and t ~= '' then
    local limit = tlimit(pri)
    if limit > 0 and admitted(base, t) >= limit then
      local l = tpush[t]
      if not l then l = {}; tpush[t] = l end
      l[#l + 1] = tag(pri, id)
      return
    end
  end
  xadd(base, id, pri, t)
end
-- Admits up to `n` jobs from tenant t's backlog. A job cancelled while it waited is admitted
-- too and dropped by `start`, which admits the next. Returns how many it admitted.
local function admit(base, t, n)
  local ids = redis.call('LPOP', base .. ':tq:' .. t, n)
  if not ids then
    redis.call('LREM', base .. ':tring', 0, t)
    return 0
  end
  for _, e in ipairs(ids) do
    local s, id = split(base, e)
    redis.call('XADD', s, '*', 'id', id)
  end
  tadd(t, #ids)
  if #ids < n then redis.call('LREM', base .. ':tring', 0, t) end
  return #ids
end
-- `k` of tenant t's stream entries are gone: count them out and, once the tenant is down to
-- half its limit, admit its next jobs up to the limit (this is also what wakes a worker
-- blocked on a tenant held at its cap). The count is written at once: its new value decides.
local function released(base, t, k)
  local c = redis.call('HINCRBY', base .. ':tadm', t, (tdelta[t] or 0) - k)
  tdelta[t] = nil
  if c <= 0 then
    -- Never below zero: a count that drifted (entries lost in a failover) heals here.
    redis.call('HDEL', base .. ':tadm', t)
    c = 0
  end
  tbase[t] = c
  local limit = tlimit('')
  if limit > 0 and c * 2 <= limit then admit(base, t, limit - c) end
end
-- Acknowledged entries are not deleted one by one: XDEL cost more Redis time per job than
-- any other command of a finish. Whole stream nodes older than every entry still needed are
-- dropped instead. Needed are the pending entries (delivered, not yet acknowledged) and those
-- not yet delivered, which follow the group's last-delivered id; so the oldest pending entry,
-- or when none is pending the last-delivered id, is the trim point. One long job holds that
-- point, so past RETAIN acknowledged entries kept behind it, `ids` (just acknowledged) are
-- deleted one by one after all: memory stays bounded whatever runs.
local RETAIN = 10000
local function xtrim_acked(s, group, ids)
  local p = redis.call('XPENDING', s, group)
  local last, lag
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == group then last, lag = f['last-delivered-id'], f['lag'] end
  end
  local min = p[2] or last
  if not min then return end
  redis.call('XTRIM', s, 'MINID', '~', min)
  -- lag is nil when Redis cannot tell how many wait; then count none as waiting.
  if redis.call('XLEN', s) - p[1] - (tonumber(lag) or 0) > RETAIN then
    redis.call('XDEL', s, unpack(ids))
  end
end
-- Acknowledges entries, one XACK per stream for those whose job was still running with them
-- (`mine[i]`: certainly pending), one each for the others (a late outcome for an entry the
-- reclaim already replaced, which XACK then finds gone). `tenants[i]` is the tenant of
-- `eids[i]` (or ''); each tenant is counted out by the entries really acknowledged, last.
local function xack_all(base, group, eids, tenants, mine)
  local by = {}
  local freed = {}
  for i, e in ipairs(eids) do
    local s, raw = split(base, e)
    local t = tenants[i]
    if mine[i] then
      local g = by[s]
      if not g then g = {}; by[s] = g end
      g[#g + 1] = raw
      if t ~= '' then freed[t] = (freed[t] or 0) + 1 end
    elseif redis.call('XACK', s, group, raw) == 1 and t ~= '' then
      freed[t] = (freed[t] or 0) + 1
    end
  end
  for s, ids in pairs(by) do
    redis.call('XACK', s, group, unpack(ids))
    xtrim_acked(s, group, ids)
  end
  for t, k in pairs(freed) do released(base, t, k) end
end
local function tflush(base)
  for t, l in pairs(tpush) do
    if redis.call('RPUSH', base .. ':tq:' .. t, unpack(l)) == #l then
      redis.call('RPUSH', base .. ':tring', t)
    end
  end
  tpush = {}
  for t, d in pairs(tdelta) do
    if d ~= 0 then
      if redis.call('HINCRBY', base .. ':tadm', t, d) <= 0 then redis.call('HDEL', base .. ':tadm', t) end
    end
  end
  tdelta = {}
end

-- Keeps the per-kind state counters of `ferry stats` in step with each job's state. Changes
-- are summed per script and written once by `flush`, so a batch of 500 jobs of one kind costs
-- two HINCRBYs, not a thousand.
local deltas = {}
-- The per-state indexes `base:idx:STATE` (sorted sets of job ids) that listing reads instead
-- of scanning: score is the enqueue (due) time for scheduled and retrying jobs, the finish time
-- for finished ones (so retention by age reads the index). Batched like the counts: one ZREM
-- and one ZADD per state and script. A job moved twice in one script keeps only its last
-- state. Waiting and running jobs are not indexed: the streams and tenant backlogs hold the
-- waiting ones, the streams' pending entries the running ones, so enqueue, start and finish
-- each save an index write.
local idx_add, idx_rem = {}, {}
local function move(base, kind, prev, new, id, score)
  if prev == new then return end
  -- Keyed by kind, then state: no string is built per job.
  local d = deltas[kind]
  if not d then d = {}; deltas[kind] = d end
  if prev then
    d[prev] = (d[prev] or 0) - 1
  end
  d[new] = (d[new] or 0) + 1
  if prev and prev ~= 'running' and prev ~= 'queued' then
    local added = idx_add[prev]
    if added and added[id] then
      added[id] = nil
    else
      local r = idx_rem[prev]
      if not r then r = {}; idx_rem[prev] = r end
      r[id] = true
    end
  end
  if new == 'running' or new == 'queued' then return end
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
  tflush(base)
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
  for kind, d in pairs(deltas) do
    for state, n in pairs(d) do
      if n ~= 0 then redis.call('HINCRBY', base .. ':stats', kind .. '|' .. state, n) end
    end
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

-- Marks a delivered entry's job running and appends it to `out` (9 fields: entry, id, kind,
-- args, attempt, max, enqueued, idempotency key, tenant); a stale entry (its job
-- cancelled, finished or gone) is acknowledged and dropped. `eid` carries its stream's prefix.
local function start(base, group, consumer, now, eid, id, out)
  local jk = jkey(base, id)
  local f = redis.call('HMGET', jk, 'kind', 'args', 'max', 'state', 'enq', 'key', 'attempts', 'co', 'run_at', 'ten')
  if not f[1] or f[4] ~= 'queued' then
    local s, raw = split(base, eid)
    if redis.call('XACK', s, group, raw) == 1 and f[10] and f[10] ~= '' then released(base, f[10], 1) end
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
  out[n + 9] = f[10] or ''
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
