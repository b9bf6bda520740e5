-- One timer step for one device: expire due PENDING commands and handle due acknowledgements.
-- A SENT command whose ack is overdue is queued for retransmission while it has been issued at
-- most maxRetransmit times, else it ends TIMEOUT. At most `limit` entries of each kind per run.
-- Entries of commands that already moved on are dropped (the expiry index is lazy).
-- KEYS: 1 pending queue, 2 status hash, 3 lifecycle hash, 4 in-flight zset, 5 retransmit zset,
--       6 expiry zset, 7 outbox, 8 callback-url hash, 9 documents hash,
--       10 device's command index (zset ms), status indexes 11 PENDING, 12 EXPIRED, 13 SENT,
--       14 TIMEOUT, 15 finished list (see finished_index.lua)
-- ARGV: 1 now ms, 2 limit
-- Returns: {expired, retransmitting, timed out, next due ms or -1}
local q, st, life, inflight, retry, exp, outbox, cb, docs =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local all, in_pending, in_expired, in_sent, in_timeout = KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])

local expired, retransmit, timed_out = {}, 0, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', exp, id)
  if redis.call('ZSCORE', q, id) then  -- still PENDING (status_of.lua)
    redis.call('HSET', st, id, 'EXPIRED')
    redis.call('ZREM', q, id)
    move_status(all, id, in_pending, in_expired)
    expired[#expired + 1] = id
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, limit)) do
  local due = redis.call('ZSCORE', inflight, id)
  redis.call('ZREM', inflight, id)
  if redis.call('HGET', st, id) == 'SENT' then
    local issued = cjson.decode(redis.call('HGET', life, id) or '{}').issuedTimes or 1
    -- documents are arrays, maxRetransmit is element 5 (store/document.py)
    local allowed = cjson.decode(redis.call('HGET', docs, id))[5] or 0
    if issued <= allowed then
      redis.call('ZADD', retry, due, id)
      retransmit = retransmit + 1
    else
      redis.call('HSET', st, id, 'TIMEOUT')
      move_status(all, id, in_sent, in_timeout)
      timed_out[#timed_out + 1] = id
    end
  end
end

local function notify(status, ids)
  local with_url = {}
  for _, id in ipairs(ids) do
    if redis.call('HEXISTS', cb, id) == 1 then
      with_url[#with_url + 1] = id
    end
  end
  if #with_url > 0 then
    redis.call('RPUSH', outbox, status .. ' ' .. now .. ' ' .. table.concat(with_url, ','))
  end
end
notify('EXPIRED', expired)
notify('TIMEOUT', timed_out)
record_finished(KEYS[15], now, expired)
record_finished(KEYS[15], now, timed_out)

local next_due = -1
for _, key in ipairs({exp, inflight}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (next_due == -1 or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
return {#expired, retransmit, #timed_out, next_due}
