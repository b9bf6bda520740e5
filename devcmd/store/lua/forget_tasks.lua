-- Remove a device's oldest finished revocation tasks (retention): the task hash and its entry
-- in the device's task index. The application's entries (`dc:{appId}:tasks` zset and
-- `dc:{appId}:task-devices` hash) are removed by store/retention.py BEFORE this script, for the
-- same reason as in forget_commands.lua: a crash in between leaves a task only the device's
-- own query lists, never an application entry with nothing behind it.
-- KEYS: 1 finished task list (`<ms> <taskId>`), 2 device's task index (zset ms),
--       3... the task hashes of the entries taken, in list order
-- ARGV: 1 the first entry as the caller read it (a concurrent run that took them first makes
--       this one a no-op), 2... the task ids, in list order (one per KEYS 3...)
-- Returns: {removed, entries left}; {-1} the head is not ARGV 1 (nothing written)
local finished, tasks = KEYS[1], KEYS[2]
if redis.call('LINDEX', finished, 0) ~= ARGV[1] then
  return {-1}
end
local removed = 0
for i = 3, #KEYS do
  redis.call('LPOP', finished)
  removed = removed + redis.call('DEL', KEYS[i])
  redis.call('ZREM', tasks, ARGV[i - 1])
end
return {removed, redis.call('LLEN', finished)}
