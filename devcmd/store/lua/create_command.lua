-- Queue one command for a device.
-- KEYS: 1 device hash, 2 pending queue (zset seq), 3 status hash (no entry while PENDING:
--       see status_of.lua), 4 callback-url hash,
--       5 device's command index (zset ms), 6 documents hash, 7 expiry (zset due ms),
--       8 PENDING status index (zset ms), 9 the device's distinct callback URLs (hash)
-- ARGV: 1 commandId, 2 now ms, 3 max pending, 4 callbackUrl ('' = none), 5 expire due ms,
--       6 the command's fixed fields (store/document.py), 7 most distinct callback URLs
--       numbered per device (beyond, a command's URL is stored in the callback hash itself)
-- Returns: {1, seq} created; {0, seq} already created (safe to run twice);
--          {-1} device unknown or deleted; {-2} pending limit reached
local dev, q, st, cb, all, docs, exp, in_pending, urls =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id, now, max_pending, url, due, doc = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]

if redis.call('EXISTS', dev) == 0 or redis.call('HGET', dev, 'deleted') == '1' then
  return {-1}
end
if status_of(st, q, id) then
  return {0, tonumber(redis.call('ZSCORE', all, id) or 0)}
end
if redis.call('ZCARD', q) >= max_pending then
  return {-2}
end

local seq = redis.call('HINCRBY', dev, 'seq', 1)
redis.call('HSET', docs, id, doc)
redis.call('ZADD', q, seq, id)
if url ~= '' then
  -- Each distinct URL is stored once per device; commands refer to it by number.
  local number = redis.call('HGET', urls, 'u:' .. url)
  if not number and redis.call('HLEN', urls) < 2 * tonumber(ARGV[7]) + 1 then
    number = redis.call('HINCRBY', urls, 'next', 1)
    redis.call('HSET', urls, 'u:' .. url, number, number, url)
  end
  redis.call('HSET', cb, id, number or url)
end
redis.call('ZADD', all, now, id)
redis.call('ZADD', in_pending, now, id)
redis.call('ZADD', exp, due, id)
return {1, seq}
