-- Admit one northbound call of an application: check its record and count the call against its
-- per-minute budget, in one round trip (authentication's token lookup is cached per process; a
-- revocation bumps `authVersion`, which this script compares, so it still takes effect at once).
-- The budget is a sliding-window counter (as flask-limiter's): the previous minute's count,
-- weighted by how much of it still overlaps the last 60 s, plus this minute's. Counts are kept
-- per limit value, so a changed limit starts a fresh count and a limit set back finds its own.
-- A refused call counts nothing; a stale version or a missing application changes nothing.
-- KEYS: 1 the application record (hash), 2 its budget (hash `<limit>:<minute>` -> calls)
-- ARGV: 1 now (ms), 2 default calls per minute (0 = unlimited), 3 the authVersion the caller's
--       token was checked against ('' = any), 4 '0' to check the record only and count nothing
--       (the store refuses writes: out of memory), else count
-- Returns: {code, authVersion, limit, weighted calls after this one (x1000), ms into the minute}
--   code 0 admitted; 1 no such live application; 2 frozen; 3 stale authVersion (look the token
--   up again); 4 over the budget (not counted)
local app, budget = KEYS[1], KEYS[2]
local now, default_limit, expected = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local WINDOW = 60000

local fields = redis.call('HMGET', app, 'secretHash', 'deleted', 'frozen', 'rateLimitPerMinute',
  'authVersion')
local version = fields[5] or '0'
if not fields[1] or fields[2] == '1' then
  return {1, version, 0, 0, 0}
end
if expected ~= '' and expected ~= version then
  return {3, version, 0, 0, 0}
end
if fields[3] == '1' then
  return {2, version, 0, 0, 0}
end
if ARGV[4] == '0' then
  return {0, version, 0, 0, 0}
end
local limit = tonumber(fields[4]) or 0
if limit <= 0 then
  limit = default_limit  -- no limit of its own (as `devcmd apps set-limit --default`)
end
if limit <= 0 then
  return {0, version, 0, 0, 0}
end

local minute, into = math.floor(now / WINDOW), now % WINDOW
local current_field = limit .. ':' .. minute
local current = tonumber(redis.call('HGET', budget, current_field)) or 0
local previous = tonumber(redis.call('HGET', budget, limit .. ':' .. (minute - 1))) or 0
-- In thousandths, so the weighted count stays an integer across the Lua/Redis boundary.
local weighted = math.floor(previous * (WINDOW - into) / WINDOW * 1000) + current * 1000
if weighted + 1000 > limit * 1000 then
  return {4, version, limit, weighted, into}
end
redis.call('HINCRBY', budget, current_field, 1)
if current == 0 then
  -- The minute's first call (at this limit) tidies up once a minute, not on every call: each
  -- write is one more line in the AOF. Expiring 2 minutes after the minute's first call keeps
  -- its count as long as it is read (until the next minute ends).
  redis.call('HDEL', budget, limit .. ':' .. (minute - 2))
  redis.call('PEXPIRE', budget, 2 * WINDOW)
end
return {0, version, limit, weighted + 1000, into}
