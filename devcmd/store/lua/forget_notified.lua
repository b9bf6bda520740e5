-- Remove a device's notification records that settled for good (delivered, or stopped by a
-- 410) before a cutoff (NOTIFICATION_RETENTION). Records that failed or are still being
-- attempted are never on this list: they stay as long as their command.
-- KEYS: 1 the device's notified list (`<ms> <id>[,<id>...]`, oldest first), 2 the device's
--       notifications hash (same device slot)
-- ARGV: 1 the cutoff (ms), 2 the most entries to take
-- Returns: {records removed, entries left, ms of the next entry or -1}
local list, records = KEYS[1], KEYS[2]
local cutoff, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
for _ = 1, most do
  local head = redis.call('LINDEX', list, 0)
  if not head then
    break
  end
  local ms, listed = string.match(head, '^(%d+) (.*)$')
  if tonumber(ms) > cutoff then
    break
  end
  redis.call('LPOP', list)
  local ids = {}
  for id in string.gmatch(listed, '[^,]+') do
    ids[#ids + 1] = id
  end
  removed = removed + redis.call('HDEL', records, unpack(ids))
end
local next_head = redis.call('LINDEX', list, 0)
local next_ms = next_head and tonumber(string.match(next_head, '^(%d+) ')) or -1
return {removed, redis.call('LLEN', list), next_ms}
