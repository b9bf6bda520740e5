-- Claim due notifications: each due member is handed to exactly one caller and stays in the
-- set with a lease (score = lease end). The delivery that settles it removes it or schedules its
-- next attempt; if that delivery dies, the member falls due again when the lease ends.
-- KEYS: 1 due set
-- ARGV: 1 now ms, 2 limit, 3 lease end ms
-- Returns: the claimed members
local due = KEYS[1]
local members = redis.call('ZRANGEBYSCORE', due, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do
  redis.call('ZADD', due, ARGV[3], member)
end
return members
