-- Shared by the scripts that make a command terminal (store/scripts.py prepends it to every
-- script that calls it); not a script of its own.
-- Record that commands reached a terminal state at `now`: one entry `<ms> <id>[,<id>...]` per
-- step on the device's finished list, read oldest first by forget_commands.lua once they are
-- older than COMMAND_RETENTION. One entry per step (a sweep batch records its whole batch in
-- one), never a write per command in the sweep.
local function record_finished(finished, now, ids)
  if #ids > 0 then
    redis.call('RPUSH', finished, now .. ' ' .. table.concat(ids, ','))
  end
end

