-- Reads up to COUNT new entries without blocking, highest priority first, and starts their
-- jobs in the same step. ARGV: base, group, consumer, count, now_us, tenant window, tenant cap.
-- Returns 8 fields per started job (see start), or {'paused'} when the queue is paused.
local base, group, me, now = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
TEN.window, TEN.cap = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', base .. ':paused') == 1 then return {'paused'} end
local out = {}
local left = tonumber(ARGV[4])
-- High first, except one fetch in ten (by the clock's milliseconds) that starts with low and
-- one that starts with default: a steady stream of high jobs cannot starve the others. The
-- stream that goes first out of turn takes at most half of the free slots, so a fetch that
-- refills many slots at once (jobs of equal length end together) still starts high jobs.
local order = {'high', '', 'low'}
local first = 0
local turn = math.floor(tonumber(now) / 1000) % 10
if turn == 0 then order = {'low', 'high', ''} elseif turn == 5 then order = {'', 'high', 'low'} end
if turn == 0 or turn == 5 then first = math.ceil(left / 2) end
local function read()
  for i, pri in ipairs(order) do
    if left <= 0 then return end
    local n = left
    if i == 1 and first > 0 then n = first end
    local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', n, 'STREAMS', skey(base, pri), '>')
    if r then
      for _, e in ipairs(r[1][2]) do
        start(base, group, me, now, tag(pri, e[1]), e[2][2], out)
        left = left - 1
      end
    end
  end
end
read()
-- The streams ran dry: admit waiting tenants' jobs round-robin, a fair share each.
if left > 0 then
  local ring = base .. ':tring'
  local tenants = redis.call('LLEN', ring)
  local want = left
  -- At most 100 tenants per fetch (the ring keeps turning across fetches), so many tenants
  -- held at their cap cannot make one fetch long.
  tenants = math.min(tenants, 100)
  for i = 1, tenants do
    if want <= 0 then break end
    local t = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    if not t then break end
    local share = math.ceil(want / (tenants - i + 1))
    if TEN.cap > 0 then share = math.min(share, TEN.cap - admitted(base, t)) end
    if share > 0 then want = want - admit(base, t, share) end
  end
  if want < left then read() end
end
flush(base)
return out
