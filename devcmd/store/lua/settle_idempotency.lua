-- Record the answer of a request that owns its Idempotency-Key, or give the key up after a
-- failure (the seed stays, so a retry meets whatever the failed attempt created).
-- KEYS: 1 the key's record
-- ARGV: 1 owner token, 2 'done' or 'open', 3 TTL seconds,
--       4 status, 5 body, 6 Location ('' = none), 7 content type (with 'done')
-- Returns: 1 settled; 0 no longer the owner (its lease ran out and another attempt took over)
local rec = KEYS[1]
if redis.call('HGET', rec, 'owner') ~= ARGV[1] or redis.call('HGET', rec, 'state') ~= 'processing' then
  return 0
end
if ARGV[2] == 'done' then
  redis.call('HSET', rec, 'state', 'done', 'status', ARGV[4], 'body', ARGV[5],
    'location', ARGV[6], 'type', ARGV[7])
  redis.call('HDEL', rec, 'owner', 'lease')
  redis.call('EXPIRE', rec, ARGV[3])
else
  redis.call('HSET', rec, 'state', 'open')
end
return 1
