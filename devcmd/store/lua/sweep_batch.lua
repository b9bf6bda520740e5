-- Cancel the next batch of a revocation task's scope, in one atomic step.
-- Everything in the pending queue is PENDING (every transition out of PENDING removes it),
-- so the batch is the lowest `batch` queue entries in (lo, hi]. Removing them and counting
-- them happen together, so a retried or duplicated run neither skips nor double-counts.
-- KEYS: 1 task hash, 2 pending queue, 3 status hash, 4 callback-url hash, 5 outbox list, 6 expiry zset
-- ARGV: 1 now ms, 2 batch size
-- Returns: {-1} unknown task; {state, cancelled in this batch, status, cancelledCount, totalCount, notified}
--          state 0 = already finished (nothing written), 1 = more to do, 2 = finished now
local task, q, st, cb, outbox, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, batch = ARGV[1], tonumber(ARGV[2])
local CHUNK = 1000

local status = redis.call('HGET', task, 'status')
if not status then
  return {-1}
end
local total = tonumber(redis.call('HGET', task, 'totalCount'))
if status ~= 'WAITING' and status ~= 'RUNNING' then
  return {0, 0, status, tonumber(redis.call('HGET', task, 'cancelledCount')), total, 0}
end
if status == 'WAITING' then
  redis.call('HSET', task, 'status', 'RUNNING', 'startTime', now)
end

local lo, hi = redis.call('HGET', task, 'lo'), redis.call('HGET', task, 'hi')
local found = redis.call('ZRANGEBYSCORE', q, '(' .. lo, hi, 'WITHSCORES', 'LIMIT', 0, batch)
local n = #found / 2
local notified = 0
if n > 0 then
  redis.call('ZREMRANGEBYSCORE', q, '(' .. lo, found[#found])
  for first = 1, n, CHUNK do
    local last = math.min(first + CHUNK - 1, n)
    local ids, pairs_ = {}, {}
    for i = first, last do
      local cid = found[2 * i - 1]
      ids[#ids + 1] = cid
      pairs_[#pairs_ + 1] = cid
      pairs_[#pairs_ + 1] = 'CANCELED'
    end
    redis.call('HSET', st, unpack(pairs_))
    redis.call('ZREM', exp, unpack(ids))
    local urls = redis.call('HMGET', cb, unpack(ids))
    local events = {}
    for i, url in ipairs(urls) do
      if url then
        events[#events + 1] = ids[i] .. ' CANCELED ' .. now
      end
    end
    if #events > 0 then
      redis.call('RPUSH', outbox, unpack(events))
      notified = notified + #events
    end
  end
end

local cancelled = redis.call('HINCRBY', task, 'cancelledCount', n)
redis.call('HSET', task, 'progressTime', now)
if n == batch then
  return {1, n, 'RUNNING', cancelled, total, notified}
end

local final = 'PART_SUCCESS'
if cancelled == total then
  final = 'SUCCESS'
elseif cancelled == 0 then
  final = 'FAILED'
  redis.call('HSET', task, 'reason', 'no command in scope was still PENDING when swept')
else
  redis.call('HSET', task, 'reason', (total - cancelled) .. ' command(s) in scope ended another way first')
end
redis.call('HSET', task, 'status', final, 'finishTime', now)
return {2, n, final, cancelled, total, notified}
