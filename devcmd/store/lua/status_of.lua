-- Shared by the scripts that read a command's status (store/scripts.py prepends it to every
-- script that calls it); not a script of its own.
-- A PENDING command has no entry in the status hash: the pending queue answers for it, as it
-- holds exactly the PENDING commands (every move out of PENDING removes the id from it in the
-- same step that writes the new status). Returns the status, or false for an unknown id.
local function status_of(st, q, id)
  return redis.call('HGET', st, id) or (redis.call('ZSCORE', q, id) and 'PENDING')
end

