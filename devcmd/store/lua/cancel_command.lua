-- Cancel one PENDING command (single cancel). Safe to run twice: the second run finds CANCELED.
-- KEYS: 1 status hash, 2 pending queue, 3 callback-url hash, 4 outbox list
-- ARGV: 1 commandId, 2 now ms
-- Returns: {1} cancelled; {-1} unknown command; {-2, status} not PENDING (nothing written)
local st, q, cb, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, now = ARGV[1], ARGV[2]

local status = redis.call('HGET', st, id)
if not status then
  return {-1}
end
if status ~= 'PENDING' then
  return {-2, status}
end
redis.call('HSET', st, id, 'CANCELED')
redis.call('ZREM', q, id)
if redis.call('HEXISTS', cb, id) == 1 then
  redis.call('RPUSH', outbox, 'CANCELED ' .. now .. ' ' .. id)
end
return {1}
