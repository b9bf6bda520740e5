-- Remove a device's oldest finished commands (retention), with every entry of the device that
-- names them. The one place a finished command's entries are removed (store/retention.py).
--
-- What names a command, and where it goes:
--   device slot `dc:{appId:deviceId}:...` (this script, one atomic step):
--     finished (list `<ms> <id>[,<id>...]`, this script pops the entries it handles),
--     status (hash), documents (hash), lifecycle (hash), callback (hash id -> the number of
--     its URL in callback-urls, or the URL itself), commands (zset: the device's command
--     index), expiry / in-flight / retransmit (zsets;
--     expiry is lazy, so a finished id may still be there), notifications (hash fields
--     `msg_<id>_<STATUS>`, one per status), in:<STATUS> (per-status zsets; in:PENDING too: a
--     swept command whose status debt is not yet paid is still listed there. The debt entry
--     itself stays: settle_statuses.lua skips ids that are no longer in the command index).
--   application slot `dc:{appId}:...` (store/retention.py, BEFORE this script):
--     command-devices:<n> (the id's bucket of the command map, id -> device ordinal, read by
--     every query of one command) and layout 2's command-devices (hash id -> deviceId, kept
--     read only for commands created before layout 3). Layout 3 has no application-wide
--     command index: queries without a deviceId merge the devices' indexes.
-- Order: the application's entries go first, so a crash between the two steps leaves a
-- command that the listings still show (the device's and the application's, both read from
-- the devices' indexes, so every count and its page agree) and that lookups by id answer as
-- unknown (404 100434), never a command map entry with nothing behind it (which nothing
-- would ever remove: the finished entries naming it are gone). The next run takes the same
-- entries again (they are popped here, last) and finishes the job.
-- Not touched: the outbox (a drained event of a removed command finds no callback URL and is
-- skipped), bucket indexes in other slots (their readers skip ids that are gone), the
-- application's command-device-ids set (the device may still have commands), the device's
-- callback-urls table (a URL's number is shared by every command that used it, and the table
-- holds at most CALLBACK_URLS_PER_DEVICE URLs: it goes with the device, forget_device.lua)
-- and the application's device-ordinals (an ordinal is never given twice; a process
-- remembers it).
--
-- KEYS: 1 finished list, 2 status hash, 3 documents hash, 4 lifecycle hash, 5 callback hash
--       (id -> URL number or URL), 6 device's command index (zset ms), 7 expiry zset, 8 in-flight zset,
--       9 retransmit zset, 10 notifications hash, status indexes 11 PENDING, 12 SUCCESSFUL,
--       13 FAILED, 14 TIMEOUT, 15 CANCELED, 16 EXPIRED
-- ARGV: 1 how many entries to take from the head of the finished list, 2 the first of them as
--       the caller read it (a concurrent run that took them first makes this one a no-op),
--       3... ids to keep for now (a notification of theirs is still being attempted): they go
--       back to the tail with their finish time, and are looked at again next time
-- Returns: {removed, entries left}; {-1} the head is not ARGV 2 (nothing written)
local finished, st, docs, life, cb, all = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local timers = {KEYS[7], KEYS[8], KEYS[9]}
local notes = KEYS[10]
local indexes = {KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]}
local take, first = tonumber(ARGV[1]), ARGV[2]
local TERMINAL = {SUCCESSFUL = true, FAILED = true, TIMEOUT = true, CANCELED = true, EXPIRED = true}
local NOTIFIED = {'SENT', 'DELIVERED', 'SUCCESSFUL', 'FAILED', 'TIMEOUT', 'CANCELED', 'EXPIRED'}
local CHUNK = 500

if redis.call('LINDEX', finished, 0) ~= first then
  return {-1}
end
local keep = {}
for i = 3, #ARGV do
  keep[ARGV[i]] = true
end

local function forget(ids)
  local states = redis.call('HMGET', st, unpack(ids))
  local gone, fields = {}, {}
  for i, id in ipairs(ids) do
    if TERMINAL[states[i]] then
      gone[#gone + 1] = id
      for _, status in ipairs(NOTIFIED) do
        fields[#fields + 1] = 'msg_' .. id .. '_' .. status
      end
    end
  end
  if #gone == 0 then
    return 0
  end
  for _, hash in ipairs({st, docs, life, cb}) do
    redis.call('HDEL', hash, unpack(gone))
  end
  redis.call('HDEL', notes, unpack(fields))
  redis.call('ZREM', all, unpack(gone))
  for _, zset in ipairs(timers) do
    redis.call('ZREM', zset, unpack(gone))
  end
  for _, zset in ipairs(indexes) do
    redis.call('ZREM', zset, unpack(gone))
  end
  return #gone
end

local removed, chunk = 0, {}
for _ = 1, take do
  local entry = redis.call('LPOP', finished)
  if not entry then
    break
  end
  local ms, listed = string.match(entry, '^(%d+) (.*)$')
  for id in string.gmatch(listed, '[^,]+') do
    if keep[id] then
      redis.call('RPUSH', finished, ms .. ' ' .. id)
    else
      chunk[#chunk + 1] = id
      if #chunk == CHUNK then
        removed = removed + forget(chunk)
        chunk = {}
      end
    end
  end
end
if #chunk > 0 then
  removed = removed + forget(chunk)
end
return {removed, redis.call('LLEN', finished)}
