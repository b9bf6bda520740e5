-- The device of one of an application's commands, from the command id alone.
-- KEYS: 1 the id's bucket of the command map (hash commandId -> device ordinal),
--       2 the application's device ordinals (hash, see keys.app_device_ordinals),
--       3 layout 2's map (hash commandId -> deviceId) for commands created before layout 3
-- ARGV: 1 commandId
-- Returns: the deviceId, or nil for an unknown command
local ordinal = redis.call('HGET', KEYS[1], ARGV[1])
if ordinal then
  return redis.call('HGET', KEYS[2], ordinal)
end
return redis.call('HGET', KEYS[3], ARGV[1])
