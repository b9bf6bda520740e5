-- Shared by the scripts that change a command's status (store/scripts.py prepends it to every
-- script that calls it); not a script of its own.
-- Move a command between two per-status indexes (zsets by creation ms, read by status filters);
-- `all` is the device's command index, which holds each command's creation ms.
local function move_status(all, id, from, to)
  redis.call('ZREM', from, id)
  local ms = redis.call('ZSCORE', all, id)
  if ms then
    redis.call('ZADD', to, ms, id)
  end
end

