-- Open a revocation task: fix its scope and fence it off from delivery, in O(log n).
-- The scope is every PENDING command with seq in (fence, seq]: those not already in an
-- earlier task's scope. Raising the fence to the device's current seq is what makes the
-- revocation effective at once: delivery only hands out commands above the fence.
-- KEYS: 1 device hash, 2 pending queue, 3 task hash, 4 device's task index (zset ms),
--       5 documents hash, 6 callback-url hash, 7 device's command index (zset ms),
--       8 the device's distinct callback URLs: the scoped commands listed in the answer are
--       returned whole
-- ARGV: 1 taskId, 2 now ms, 3 how many scoped ids to return, 4 appId, 5 deviceId,
--       6 '1' when the device is being deleted (no further commands accepted),
--       7 optional largest scope accepted (a synchronous cancel); absent or 0 = no limit,
--       8 optional '1': keep the task out of the device's task index (a synchronous cancel)
-- Returns: {1, total, scoped...} opened; {0, total, scoped...} already open;
--          {-1} device unknown; {-2, total} scope larger than ARGV 7 (nothing written).
--          Scoped is (commandId, document, callbackUrl or '', creation ms) per scoped command
--          still PENDING, in queue order.
local dev, q, task, tasks, docs, cb, all, numbered =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, now, cap, app_id, device_id, deleting = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local limit = tonumber(ARGV[7] or '0') or 0
local unlisted = ARGV[8] == '1'

local function scoped(result, lo, hi, total)
  if cap <= 0 or total == 0 then
    return result
  end
  local ids = redis.call('ZRANGEBYSCORE', q, '(' .. lo, hi, 'LIMIT', 0, cap)
  -- HMGET in chunks: unpack() of a very long list exceeds Lua's stack (TASK_INLINE_COMMANDS
  -- may be set high), and this runs after the task is written.
  for first = 1, #ids, 1000 do
    local chunk = {}
    for i = first, math.min(first + 999, #ids) do
      chunk[#chunk + 1] = ids[i]
    end
    local found, urls = redis.call('HMGET', docs, unpack(chunk)), redis.call('HMGET', cb, unpack(chunk))
    local created = redis.call('ZMSCORE', all, unpack(chunk))
    for i, doc in ipairs(found) do
      result[#result + 1] = chunk[i]
      result[#result + 1] = doc
      local url = urls[i]
      if url and tonumber(url) then  -- a number in the device's URL table (keys.callback_urls)
        url = redis.call('HGET', numbered, url)
      end
      result[#result + 1] = url or ''
      result[#result + 1] = created[i]
    end
  end
  return result
end

local lo = redis.call('HGET', task, 'lo')
if lo then
  local total = tonumber(redis.call('HGET', task, 'totalCount'))
  return scoped({0, total}, lo, redis.call('HGET', task, 'hi'), total)
end
if redis.call('EXISTS', dev) == 0 or redis.call('HGET', dev, 'deleted') == '1' then
  return {-1}
end

lo = redis.call('HGET', dev, 'fence') or '0'
local hi = redis.call('HGET', dev, 'seq') or '0'
local total = redis.call('ZCOUNT', q, '(' .. lo, hi)
if limit > 0 and total > limit then
  return {-2, total}
end
redis.call('HSET', dev, 'fence', hi)
if deleting == '1' then
  redis.call('HSET', dev, 'deleted', '1', 'deletedTime', now)
end
redis.call('HSET', task, 'taskId', id, 'appId', app_id, 'deviceId', device_id,
  'status', 'WAITING', 'lo', lo, 'hi', hi, 'totalCount', total, 'cancelledCount', 0,
  'creationTime', now, 'internal', deleting)
if not unlisted then
  redis.call('ZADD', tasks, now, id)
end
return scoped({1, total}, lo, hi, total)
