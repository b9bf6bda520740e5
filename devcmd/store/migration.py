"""`devcmd migrate`: bring a store written with the previous key layout to this one.

Layout 2 -> 3 rewrites every command document in the compact form of store/document.py, drops
the status hash entries of PENDING commands (the pending queue answers for them,
lua/status_of.lua) and deletes the applications' command indexes (layout 3 merges the devices'
ones). Layout 2's application-wide `command-devices` maps stay, read only, for the commands
created before (layout 3 maps commands to device ordinals in small buckets, see
keys.command_devices). While it runs the layout key says `<new>-migrating/<buckets>`, so
processes of either version refuse to start; it is set to the new layout once every device is
done. Running it again is harmless (a rewritten
document is skipped, a migrated store is left alone) and an interrupted run is finished by the
next one.

A store written before retention has no `finished` lists: each device's commands that ended
and are on no finished list are appended to it, as ended at the migration's time (so none is
removed before a whole COMMAND_RETENTION has passed). A device whose list exists already
(a layout-2 store of the devcmd that introduced retention) gets only what it lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from redis import Redis

from devcmd.clock import now_ms
from devcmd.store import document, keys, layout, retention

FROM_VERSION = 2
CHUNK = 500  # document fields read and rewritten per round trip
TERMINAL = frozenset({"SUCCESSFUL", "FAILED", "TIMEOUT", "CANCELED", "EXPIRED"})


class CannotMigrate(RuntimeError):
    """The store's layout is neither the previous one nor this one."""


def migrating(buckets: int) -> str:
    """The layout key's value while a migration to this layout runs."""
    return f"{keys.LAYOUT_VERSION}-migrating/{buckets}"


def start(redis: Redis, buckets: int) -> bool:
    """Mark the store as migrating; False if it needs no migration (already this layout, or
    empty: then this layout is recorded). Raises CannotMigrate for any other layout."""
    found = redis.get(keys.layout())
    if found is None and not any(redis.exists(key) for key in layout.LEGACY_KEYS):
        redis.set(keys.layout(), layout.expected(buckets), nx=True)
        found = redis.get(keys.layout())
    if found == layout.expected(buckets):
        return False
    if found not in (f"{FROM_VERSION}/{buckets}", migrating(buckets)):
        raise CannotMigrate(
            f"the data store has key layout {found or '1/1'}; `devcmd migrate` of this devcmd "
            f"moves layout {FROM_VERSION}/{buckets} to {layout.expected(buckets)} (set "
            "INDEX_BUCKETS to the store's)"
        )
    redis.set(keys.layout(), migrating(buckets))
    return True


def document_keys(redis: Redis) -> list[str]:
    """Every device's documents hash (a scan of the whole store: migrations run once)."""
    pattern = f"{keys.PREFIX}:{{*}}:documents"
    return sorted(redis.scan_iter(match=pattern, count=1000, _type="hash"))


def app_command_indexes(redis: Redis) -> list[str]:
    """Layout 2's application-wide command indexes (`{appId}` tags: an appId has no colon,
    a device's `{appId:deviceId}` has one)."""
    found = redis.scan_iter(match=f"{keys.PREFIX}:{{*}}:commands", count=1000, _type="zset")
    return sorted(key for key in found if ":" not in _tag(key))


def _tag(key: str) -> str:
    """The hash tag of a key: `appId` or `appId:deviceId`."""
    return key.split("{", 1)[1].split("}", 1)[0]


def rewrite(redis: Redis, key: str, now: int) -> int:
    """Rewrite the layout-2 documents of one device's hash, drop the status entries of its
    PENDING commands and list its ended commands that no finished list names (see the module
    docstring); returns how many documents were rewritten."""
    app_id, device_id = _tag(key).split(":", 1)
    statuses = keys.statuses(app_id, device_id)
    ended: list[str] = []
    for chunk in _chunks(redis.hscan_iter(statuses, count=CHUNK)):
        pending = [field for field, status in chunk if status == "PENDING"]
        if pending:
            redis.hdel(statuses, *pending)
        ended += [field for field, status in chunk if status in TERMINAL]
    record_finished(redis, keys.finished(app_id, device_id), ended, now)
    rewritten = 0
    for chunk in _chunks(redis.hscan_iter(key, count=CHUNK)):
        legacy = {f: document.from_legacy(v) for f, v in chunk if document.is_legacy(v)}
        if legacy:
            redis.hset(key, mapping=legacy)
            rewritten += len(legacy)
    return rewritten


def record_finished(redis: Redis, finished: str, ended: list[str], now: int) -> None:
    """Append to a device's finished list those of its `ended` commands it does not name yet,
    in entries of CHUNK ids ended at `now` (finished_index.lua's form)."""
    if not ended:
        return
    listed = {
        command_id
        for entry in redis.lrange(finished, 0, -1)
        for command_id in entry.split(" ", 1)[1].split(",")
    }
    missing = [command_id for command_id in ended if command_id not in listed]
    entries = [f"{now} {','.join(ids)}" for ids in _chunks(iter(missing))]
    if entries:
        redis.rpush(finished, *entries)


def _chunks(items: Iterator[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def finish(redis: Redis, buckets: int) -> None:
    redis.set(keys.layout(), layout.expected(buckets))


def migrate(
    redis: Redis,
    buckets: int,
    on_keys: Callable[[int], None] = lambda total: None,
    on_key: Callable[[int], None] = lambda rewritten: None,
    now: int | None = None,
    on_registered: Callable[[int], None] = lambda devices: None,
) -> int:
    """Migrate the store; returns how many documents were rewritten (0 if none needed it).

    `on_keys(total)` is told how many hashes there are to go through, `on_key(rewritten)`
    after each one (a progress bar); `now` (default: the clock) is the finish time given to
    ended commands no finished list names. Raises CannotMigrate.

    Every device is then put on the retention index (store.retention.register_existing; a
    store written before retention has none there, and retention only visits devices on it),
    on every run, a store already on this layout too (one migrated by a devcmd that left it
    to the command line): `on_registered(devices)` is told how many. On a migration it is done
    before the new layout is recorded, so an interrupted run is finished by the next one."""
    now = now_ms() if now is None else now
    if not start(redis, buckets):
        on_registered(retention.register_existing(redis, buckets, now))
        return 0
    found = document_keys(redis)
    on_keys(len(found))
    total = 0
    for key in found:
        rewritten = rewrite(redis, key, now)
        total += rewritten
        on_key(rewritten)
    for key in app_command_indexes(redis):
        redis.delete(key)
    on_registered(retention.register_existing(redis, buckets, now))
    finish(redis, buckets)
    return total
