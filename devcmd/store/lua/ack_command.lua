-- A device acknowledges a command: SENT -> DELIVERED. Acknowledging a DELIVERED command again
-- changes nothing (safe to run twice).
-- KEYS: 1 status hash, 2 lifecycle hash, 3 in-flight zset, 4 retransmit zset, 5 outbox,
--       6 callback-url hash, 7 device's command index (zset ms), 8 SENT and 9 DELIVERED
--       status indexes, 10 pending queue
-- ARGV: 1 commandId, 2 now ms
-- Returns: {1} delivered now; {0} already delivered; {-1} unknown; {-2, status} not SENT
local st, life, inflight, retry, outbox, cb = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local all, in_sent, in_delivered, q = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local id, now = ARGV[1], tonumber(ARGV[2])

local status = status_of(st, q, id)
if not status then
  return {-1}
end
if status == 'DELIVERED' then
  return {0}
end
if status ~= 'SENT' then
  return {-2, status}
end
local fields = cjson.decode(redis.call('HGET', life, id) or '{}')
fields.deliveredTime = now
redis.call('HSET', life, id, cjson.encode(fields))
redis.call('HSET', st, id, 'DELIVERED')
move_status(all, id, in_sent, in_delivered)
redis.call('ZREM', inflight, id)
redis.call('ZREM', retry, id)
if redis.call('HEXISTS', cb, id) == 1 then
  redis.call('RPUSH', outbox, 'DELIVERED ' .. now .. ' ' .. id)
end
return {1}
