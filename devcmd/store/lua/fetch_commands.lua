-- Hand a device its next commands, in queue order, and mark each SENT.
-- Commands waiting for retransmission come first (they were sent before: the queue head), then
-- PENDING commands above the device's fence: fenced commands belong to a revocation task and
-- are never handed out. A PENDING command whose expiry is due is expired instead of sent.
-- KEYS: 1 device hash, 2 pending queue, 3 status hash, 4 lifecycle hash, 5 in-flight zset
--       (ack due ms), 6 retransmit zset, 7 expiry zset, 8 outbox list, 9 callback-url hash,
--       10 device's command index (zset ms), status indexes 11 PENDING, 12 SENT, 13 EXPIRED,
--       14 finished list (see finished_index.lua)
-- ARGV: 1 now ms, 2 max commands, 3 ack timeout ms, 4 (optional) the SHA-256 hex digest of the
--       psk the device presented: the device is then authenticated here, in the same step
-- Returns: {notified, id, ...}: 1 if an outbox event was recorded, then the commands now SENT;
--          {-1} if the device is deleted; {-2} if a digest was given and is not the live
--          device's (unknown, deleted, or another psk): nothing changed
local dev, q, st, life, inflight, retry, exp, outbox, cb =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local all, in_pending, in_sent, in_expired = KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local now, max, ack_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local record = redis.call('HMGET', dev, 'deleted', 'nodeId', 'pskHash')
if ARGV[4] and (record[1] == '1' or not record[2] or record[3] ~= ARGV[4]) then
  -- Digests of a random psk: comparing them byte by byte tells a caller nothing it can use.
  return {-2}
end
if record[1] == '1' then
  return {-1}
end

local sent, first_sent, expired = {}, {}, {}

local function issue(id)
  local fields = cjson.decode(redis.call('HGET', life, id) or '{}')
  fields.issuedTimes = (fields.issuedTimes or 0) + 1
  fields.platformIssuedTime = now
  redis.call('HSET', life, id, cjson.encode(fields))
  redis.call('ZADD', inflight, now + ack_ms, id)
  sent[#sent + 1] = id
end

for _, id in ipairs(redis.call('ZRANGE', retry, 0, max - 1)) do
  redis.call('ZREM', retry, id)
  if redis.call('HGET', st, id) == 'SENT' then
    issue(id)
  end
end

local fence = redis.call('HGET', dev, 'fence') or '0'
while #sent < max do
  local ids = redis.call('ZRANGEBYSCORE', q, '(' .. fence, '+inf', 'LIMIT', 0, max - #sent)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    redis.call('ZREM', q, id)
    local due = tonumber(redis.call('ZSCORE', exp, id))
    redis.call('ZREM', exp, id)
    if due and due <= now then
      redis.call('HSET', st, id, 'EXPIRED')
      move_status(all, id, in_pending, in_expired)
      expired[#expired + 1] = id
    else
      redis.call('HSET', st, id, 'SENT')
      move_status(all, id, in_pending, in_sent)
      issue(id)
      first_sent[#first_sent + 1] = id
    end
  end
end

local notified = 0
local function notify(status, ids)
  if #ids == 0 then
    return
  end
  local urls = redis.call('HMGET', cb, unpack(ids))
  local with_url = {}
  for i, url in ipairs(urls) do
    if url then
      with_url[#with_url + 1] = ids[i]
    end
  end
  if #with_url > 0 then
    redis.call('RPUSH', outbox, status .. ' ' .. now .. ' ' .. table.concat(with_url, ','))
    notified = 1
  end
end
notify('SENT', first_sent)
notify('EXPIRED', expired)
record_finished(KEYS[14], now, expired)
table.insert(sent, 1, notified)
return sent
