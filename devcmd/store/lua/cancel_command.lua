-- Cancel one PENDING command (single cancel). Safe to run twice: the second run finds CANCELED.
-- KEYS: 1 status hash, 2 pending queue, 3 callback-url hash, 4 outbox list,
--       5 device's command index (zset ms), 6 PENDING and 7 CANCELED status indexes,
--       8 finished list (see finished_index.lua)
-- ARGV: 1 commandId, 2 now ms
-- Returns: {1} cancelled; {-1} unknown command; {-2, status} not PENDING (nothing written)
local st, q, cb, outbox, all, in_pending, in_canceled =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, now = ARGV[1], ARGV[2]

local status = status_of(st, q, id)
if not status then
  return {-1}
end
if status ~= 'PENDING' then
  return {-2, status}
end
redis.call('HSET', st, id, 'CANCELED')
redis.call('ZREM', q, id)
move_status(all, id, in_pending, in_canceled)
record_finished(KEYS[8], now, {id})
if redis.call('HEXISTS', cb, id) == 1 then
  redis.call('RPUSH', outbox, 'CANCELED ' .. now .. ' ' .. id)
end
return {1}
