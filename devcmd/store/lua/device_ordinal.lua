-- The ordinal of a device in its application (the prefix of its command ids), given once.
-- KEYS: 1 the application's ordinals hash: 'next' -> last given, 'd:<deviceId>' -> ordinal,
--       '<ordinal>' -> deviceId
-- ARGV: 1 deviceId
-- Returns: the device's ordinal (safe to run twice: the same one)
local ordinals, device = KEYS[1], ARGV[1]
local given = redis.call('HGET', ordinals, 'd:' .. device)
if given then
  return tonumber(given)
end
local n = redis.call('HINCRBY', ordinals, 'next', 1)
redis.call('HSET', ordinals, 'd:' .. device, n, n, device)
return n
