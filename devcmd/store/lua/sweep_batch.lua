-- Cancel the next batch of a revocation task's scope, in one atomic step.
-- Everything in the pending queue is PENDING (every transition out of PENDING removes it),
-- so the batch is the lowest `batch` queue entries in (lo, hi]. Removing them, marking them
-- CANCELED, recording one outbox event for the whole batch and counting them happen together,
-- so a retried or duplicated run neither skips nor double-counts. A command whose expireTime has
-- passed (the timer has not reached it yet) ends EXPIRED, as a fetch would make it, and is not
-- counted; the device's expiry index is read only when some entry of it is due. Otherwise the
-- expiry index is left alone: the expiry job skips ids that are no longer PENDING.
-- The per-status indexes are not touched here (a move per command would double the sweep's
-- cost): each batch records its moves in the device's status debt list, one entry per status,
-- and settle_statuses.lua applies them before the indexes are read.
-- KEYS: 1 task hash, 2 pending queue, 3 status hash, 4 outbox list, 5 expiry zset,
--       6 status debt list, 7 finished list (see finished_index.lua), 8 finished task list
--       (`<ms> <taskId>` once the task is finished, read by forget_tasks.lua)
-- ARGV: 1 now ms, 2 batch size, 3 optional '1': also return the ids cancelled in this batch
--       (a synchronous cancel answers them; the worker's sweep leaves it out and stays lean)
-- Returns: {-1} unknown task; {state, cancelled in this batch, status, cancelledCount, totalCount}
--          then, with ARGV 3 = '1', the ids cancelled in this batch in queue order;
--          state 0 = already finished (nothing written), 1 = more to do, 2 = finished now
local task, q, st, outbox, exp, debt = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, batch, with_ids = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local CHUNK = 1000

local status = redis.call('HGET', task, 'status')
if not status then
  return {-1}
end
local total = tonumber(redis.call('HGET', task, 'totalCount'))
if status ~= 'WAITING' and status ~= 'RUNNING' then
  return {0, 0, status, tonumber(redis.call('HGET', task, 'cancelledCount')), total}
end
if status == 'WAITING' then
  redis.call('HSET', task, 'status', 'RUNNING', 'startTime', now)
end

local lo, hi = redis.call('HGET', task, 'lo'), redis.call('HGET', task, 'hi')
local taken = redis.call('ZRANGEBYSCORE', q, '(' .. lo, hi, 'LIMIT', 0, batch)
local ids, expired = taken, {}
if #taken > 0 then
  redis.call('ZREMRANGEBYSCORE', q, '(' .. lo, redis.call('ZSCORE', q, taken[#taken]))
  if #redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, 1) > 0 then
    ids = {}
    for first = 1, #taken, CHUNK do
      local chunk = {}
      for i = first, math.min(first + CHUNK - 1, #taken) do
        chunk[#chunk + 1] = taken[i]
      end
      local dues = redis.call('ZMSCORE', exp, unpack(chunk))
      for i, id in ipairs(chunk) do
        if dues[i] and tonumber(dues[i]) <= tonumber(now) then
          expired[#expired + 1] = id
        else
          ids[#ids + 1] = id
        end
      end
    end
    for _, id in ipairs(expired) do
      redis.call('HSET', st, id, 'EXPIRED')
      redis.call('ZREM', exp, id)
    end
    if #expired > 0 then
      local listed = table.concat(expired, ',')
      redis.call('RPUSH', outbox, 'EXPIRED ' .. now .. ' ' .. listed)
      redis.call('RPUSH', debt, 'EXPIRED ' .. listed)
      redis.call('RPUSH', KEYS[7], now .. ' ' .. listed)  -- finished (finished_index.lua)
    end
  end
end
local n = #ids
if n > 0 then
  for first = 1, n, CHUNK do
    local pairs_ = {}
    for i = first, math.min(first + CHUNK - 1, n) do
      pairs_[#pairs_ + 1] = ids[i]
      pairs_[#pairs_ + 1] = 'CANCELED'
    end
    redis.call('HSET', st, unpack(pairs_))
  end
  local listed = table.concat(ids, ',')
  redis.call('RPUSH', outbox, 'CANCELED ' .. now .. ' ' .. listed)
  redis.call('RPUSH', debt, 'CANCELED ' .. listed)
  redis.call('RPUSH', KEYS[7], now .. ' ' .. listed)
end

local function reply(state, final, count)
  local out = {state, n, final, count, total}
  if with_ids then
    for i = 1, n do
      out[5 + i] = ids[i]
    end
  end
  return out
end

local cancelled = redis.call('HINCRBY', task, 'cancelledCount', n)
redis.call('HSET', task, 'progressTime', now)
if #taken == batch then
  return reply(1, 'RUNNING', cancelled)
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
redis.call('RPUSH', KEYS[8], now .. ' ' .. redis.call('HGET', task, 'taskId'))
return reply(2, final, cancelled)
