-- Remove what is left of a deleted device once retention has removed all its commands and
-- tasks: its record and its (by then empty or lazy) per-device keys, its callback-urls table
-- among them. A deleted device gets no new command or task, so once this finds nothing left
-- nothing can come back. Its entries in the application's device-ordinals stay (two short
-- fields): processes remember ordinals, so one must never be taken back and given again.
-- KEYS: 1 device hash, 2 device's command index, 3 device's task index, 4 finished list,
--       5 finished task list, 6... every other key of the device (deleted as they are)
-- ARGV: none
-- Returns: 1 removed; 0 not deleted, or something is left (nothing written)
if redis.call('HGET', KEYS[1], 'deleted') ~= '1' then
  return 0
end
for i = 2, 5 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end
redis.call('DEL', unpack(KEYS))
return 1
