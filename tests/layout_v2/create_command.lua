-- Queue one command for a device.
-- KEYS: 1 device hash, 2 pending queue (zset seq), 3 status hash, 4 callback-url hash,
--       5 device's command index (zset ms), 6 documents hash, 7 expiry (zset due ms),
--       8 PENDING status index (zset ms)
-- ARGV: 1 commandId, 2 now ms, 3 max pending, 4 callbackUrl ('' = none), 5 expire due ms,
--       6 the command's fixed fields as a JSON object (without seq)
-- Returns: {1, seq} created; {0, seq} already created (safe to run twice);
--          {-1} device unknown or deleted; {-2} pending limit reached
local dev, q, st, cb, all, docs, exp, in_pending =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, now, max_pending, url, due, doc = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]

if redis.call('EXISTS', dev) == 0 or redis.call('HGET', dev, 'deleted') == '1' then
  return {-1}
end
if redis.call('HEXISTS', st, id) == 1 then
  return {0, tonumber(redis.call('ZSCORE', all, id) or 0)}
end
if redis.call('ZCARD', q) >= max_pending then
  return {-2}
end

local seq = redis.call('HINCRBY', dev, 'seq', 1)
redis.call('HSET', docs, id, doc)
redis.call('ZADD', q, seq, id)
redis.call('HSET', st, id, 'PENDING')
if url ~= '' then
  redis.call('HSET', cb, id, url)
end
redis.call('ZADD', all, now, id)
redis.call('ZADD', in_pending, now, id)
redis.call('ZADD', exp, due, id)
return {1, seq}
