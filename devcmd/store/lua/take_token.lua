-- Consume a token only if it belongs to the given application: a refresh token used by another
-- application, or an access token logged out by another, stays live. Safe to run twice (the
-- second run finds nothing and changes nothing).
-- KEYS: 1 the token key (access or refresh, by its digest)
-- ARGV: 1 the appId that must own the token
-- Returns: 1 consumed; 0 unknown, expired or another application's (nothing changed)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
