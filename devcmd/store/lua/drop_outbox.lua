-- Hand over the first events of a device's outbox, but only while the caller still holds the
-- device's drain lock, and renew the lock for the next round. A drainer that stalled past its
-- lock (and whose events another drainer may have taken meanwhile) drops nothing.
-- KEYS: 1 the outbox list, 2 the drain lock (same device slot)
-- ARGV: 1 the caller's lock token, 2 how many events to drop, 3 the lock's new TTL (ms)
-- Returns: the events left, or -1 if the lock is no longer the caller's (nothing changed)
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
return redis.call('LLEN', KEYS[1])
