-- Claim a new device's unique names in its application: nodeId, and optionally assetId and
-- productKey + deviceKey. Every name is checked before the first write, so a refused device
-- claims nothing. Safe to run twice for the same deviceId.
-- KEYS: 1 nodeId hash, 2 assetId hash, 3 productKey/deviceKey hash (all name -> deviceId)
-- ARGV: 1 deviceId, 2 nodeId, 3 assetId ('' = none), 4 'productKey/deviceKey' ('' = none)
-- Returns: {1} claimed; {-1} nodeId taken; {-2} assetId taken; {-3} productKey + deviceKey taken
local nodes, assets, dkeys = KEYS[1], KEYS[2], KEYS[3]
local id, node, asset, dkey = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local function taken(hash, name)
  if name == '' then
    return false
  end
  local owner = redis.call('HGET', hash, name)
  return owner and owner ~= id
end

if taken(nodes, node) then
  return {-1}
end
if taken(assets, asset) then
  return {-2}
end
if taken(dkeys, dkey) then
  return {-3}
end
redis.call('HSET', nodes, node, id)
if asset ~= '' then
  redis.call('HSET', assets, asset, id)
end
if dkey ~= '' then
  redis.call('HSET', dkeys, dkey, id)
end
return {1}
