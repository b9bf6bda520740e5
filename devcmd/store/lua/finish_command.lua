-- A device reports a command's result: SENT or DELIVERED -> SUCCESSFUL | FAILED (a result
-- implies delivery). Every terminal state is final: a second result is refused and changes nothing.
-- KEYS: 1 status hash, 2 lifecycle hash, 3 in-flight zset, 4 retransmit zset, 5 outbox,
--       6 callback-url hash, 7 device's command index (zset ms), status indexes 8 SENT,
--       9 DELIVERED, 10 SUCCESSFUL, 11 FAILED, 12 pending queue,
--       13 finished list (see finished_index.lua)
-- ARGV: 1 commandId, 2 now ms, 3 SUCCESSFUL | FAILED, 4 resultDetail as JSON
-- Returns: {1} finished now; {-1} unknown; {-2, status} not SENT or DELIVERED
local st, life, inflight, retry, outbox, cb = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local all, q = KEYS[7], KEYS[12]
local index = {SENT = KEYS[8], DELIVERED = KEYS[9], SUCCESSFUL = KEYS[10], FAILED = KEYS[11]}
local id, now, code, detail = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local status = status_of(st, q, id)
if not status then
  return {-1}
end
if status ~= 'SENT' and status ~= 'DELIVERED' then
  return {-2, status}
end
if not index[code] then
  return redis.error_reply('result code must be SUCCESSFUL or FAILED')
end
local fields = cjson.decode(redis.call('HGET', life, id) or '{}')
fields.deliveredTime = fields.deliveredTime or now
fields.executeTime = now
fields.result = {resultCode = code, resultDetail = cjson.decode(detail)}
redis.call('HSET', life, id, cjson.encode(fields))
redis.call('HSET', st, id, code)
move_status(all, id, index[status], index[code])
record_finished(KEYS[13], now, {id})
redis.call('ZREM', inflight, id)
redis.call('ZREM', retry, id)
if redis.call('HEXISTS', cb, id) == 1 then
  redis.call('RPUSH', outbox, code .. ' ' .. now .. ' ' .. id)
end
return {1}
