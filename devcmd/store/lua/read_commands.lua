-- What a query reads about commands of one device, in one step: a page of the commands created
-- in a window (with their exact count, from the same moment as the page), or given ids; for
-- each command found, the fields its record is built from.
-- Reads only; unknown ids (no document, status or creation time: removed by retention, or a
-- create that failed half way) are left out.
-- KEYS: 1 device's command index (zset ms), 2 documents hash, 3 status hash, 4 pending queue,
--       5 lifecycle hash, 6 callback hash, 7 callback-url hash
-- ARGV: 'page', start ms, end ms, offset, limit: the commands created in [start, end], newest
--       first (ties by id, descending), from `offset`, at most `limit`
--       'ids', id...: these commands, in this order
-- Returns: {total, ids, creation ms, statuses, callback URLs (nil for none), lifecycles,
--          documents}: total matching the window ('page'; -1 for 'ids'), then one entry per
--          command found, in order: four arrays, and the lifecycle objects (null for none) and
--          the documents (store/document.py's stored form) each as one JSON array
local all, docs, st, q, life, cb, urls =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]

local total, ids, created = -1, {}, {}
if ARGV[1] == 'page' then
  local start, finish = ARGV[2], ARGV[3]
  total = redis.call('ZCOUNT', all, start, finish)
  if total > tonumber(ARGV[4]) then
    local listed = redis.call('ZREVRANGEBYSCORE', all, finish, start, 'WITHSCORES',
      'LIMIT', ARGV[4], ARGV[5])
    for i = 1, #listed, 2 do
      local n = (i + 1) / 2
      ids[n], created[n] = listed[i], listed[i + 1]
    end
  end
else
  for i = 2, #ARGV do
    ids[i - 1] = ARGV[i]
  end
  if #ids > 0 then
    created = redis.call('ZMSCORE', all, unpack(ids))
  end
end
if #ids == 0 then
  return {total, {}, {}, {}, {}, '[]', '[]'}
end

local documents = redis.call('HMGET', docs, unpack(ids))
local states = redis.call('HMGET', st, unpack(ids))
-- Commands never fetched have no lifecycle entry, and commands without a callback no callback
-- entry: a device that has neither has no such hash, and its ids are not sent to read nothing.
local function entries(hash)
  if redis.call('EXISTS', hash) == 0 then
    return {}
  end
  return redis.call('HMGET', hash, unpack(ids))
end
local lives, refs = entries(life), entries(cb)

-- A PENDING command has no status entry: the pending queue holds exactly those (status_of.lua).
local unwritten, at, n = {}, {}, 0
for i = 1, #ids do
  if not states[i] then
    n = n + 1
    unwritten[n], at[n] = ids[i], i
  end
end
if n > 0 then
  local queued = redis.call('ZMSCORE', q, unpack(unwritten))
  for k, i in ipairs(at) do
    states[i] = queued[k] and 'PENDING'
  end
end

-- A callback entry is the number of its URL in the device's table, or the URL itself (layout 2,
-- or a device past CALLBACK_URLS_PER_DEVICE distinct URLs). Each number is read once.
local numbers, wanted = {}, {}
for i = 1, #ids do
  local ref = refs[i]
  if ref and not wanted[ref] and string.match(ref, '^%d+$') then
    numbers[#numbers + 1] = ref
    wanted[ref] = true
  end
end
local url_of = {}
if #numbers > 0 then
  local numbered = redis.call('HMGET', urls, unpack(numbers))
  for k, number in ipairs(numbers) do
    url_of[number] = numbered[k]
  end
end

-- The caller builds the records: here only the rows found, and the stored JSON joined into one
-- array of each kind, so a page is decoded in one call.
local out_ids, out_ms, out_states, out_urls, out_lives, out_docs = {}, {}, {}, {}, {}, {}
local m = 0
for i, id in ipairs(ids) do
  local ms = tonumber(created[i])
  if documents[i] and states[i] and ms then
    m = m + 1
    local ref = refs[i]
    if ref then
      ref = url_of[ref] or (not string.match(ref, '^%d+$') and ref)
    end
    out_ids[m], out_ms[m], out_states[m], out_urls[m] = id, ms, states[i], ref or false
    out_lives[m], out_docs[m] = lives[i] or 'null', documents[i]
  end
end
return {total, out_ids, out_ms, out_states, out_urls,
  '[' .. table.concat(out_lives, ',') .. ']', '[' .. table.concat(out_docs, ',') .. ']'}
