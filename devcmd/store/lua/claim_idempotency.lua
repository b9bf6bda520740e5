-- Claim an Idempotency-Key for one request, or say what became of the request that has it.
-- KEYS: 1 the key's record (hash in the calling application's slot)
-- ARGV: 1 request fingerprint, 2 a fresh seed (the id the request's effect will use),
--       3 a fresh owner token, 4 now ms, 5 lease ms, 6 TTL seconds
-- Returns: {'run', seed} the caller now owns the key and must create its effect with `seed`
--          (a new key takes ARGV 2; a key whose earlier attempt failed or outlived its lease
--          keeps its seed, so a second attempt meets the first one's effect, never a new one);
--          {'done', status, body, location, content type} the first answer, to replay;
--          {'busy', ms} another attempt holds it for `ms` more; {'mismatch'} another request.
local rec = KEYS[1]
local fp, seed, owner, now, lease, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]

local known = redis.call('HMGET', rec, 'fp', 'state', 'seed', 'lease')
if not known[1] then
  redis.call('HSET', rec, 'fp', fp, 'state', 'processing', 'seed', seed, 'owner', owner,
    'lease', now + lease)
  redis.call('EXPIRE', rec, ttl)
  return {'run', seed}
end
if known[1] ~= fp then
  return {'mismatch'}
end
if known[2] == 'done' then
  local answer = redis.call('HMGET', rec, 'status', 'body', 'location', 'type')
  return {'done', answer[1], answer[2], answer[3] or '', answer[4] or ''}
end
if known[2] == 'processing' and tonumber(known[4]) > now then
  return {'busy', tonumber(known[4]) - now}
end
redis.call('HSET', rec, 'state', 'processing', 'owner', owner, 'lease', now + lease)
return {'run', known[3]}
