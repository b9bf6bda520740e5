-- Pay a device's status debt: the moves out of PENDING that sweep batches recorded instead of
-- making them. Entries are applied oldest first, each moving its ids from the PENDING index to
-- the CANCELED or EXPIRED one, scored by creation ms, with three bulk calls per chunk. Safe to
-- run twice and concurrently: an entry is popped in the same step that applies it.
-- KEYS: 1 status debt list, 2 device's command index (zset ms), status indexes 3 PENDING,
--       4 CANCELED, 5 EXPIRED
-- ARGV: 1 most entries to apply in this run (0 = all; callers bound it so Redis is never held
--       long)
-- Returns: entries left
local debt, all, in_pending = KEYS[1], KEYS[2], KEYS[3]
local index = {CANCELED = KEYS[4], EXPIRED = KEYS[5]}
local most = tonumber(ARGV[1])
local CHUNK = 1000

local function move(ids, to)
  local created = redis.call('ZMSCORE', all, unpack(ids))
  local scored, n = {}, 0
  for i, id in ipairs(ids) do
    if created[i] then
      scored[n + 1], scored[n + 2], n = created[i], id, n + 2
    end
  end
  redis.call('ZREM', in_pending, unpack(ids))
  if n > 0 then
    redis.call('ZADD', to, unpack(scored))
  end
end

local applied = 0
while most == 0 or applied < most do
  local entry = redis.call('LPOP', debt)
  if not entry then
    break
  end
  local status, listed = string.match(entry, '^(%u+) (.*)$')
  local chunk = {}
  for id in string.gmatch(listed, '[^,]+') do
    chunk[#chunk + 1] = id
    if #chunk == CHUNK then
      move(chunk, index[status])
      chunk = {}
    end
  end
  if #chunk > 0 then
    move(chunk, index[status])
  end
  applied = applied + 1
end
return redis.call('LLEN', debt)
