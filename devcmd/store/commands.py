"""Command records: creation, single cancel and reads through Lua; the counts and ids of pages
merged over devices or statuses through pipelines."""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from devcmd import errors, faults
from devcmd.store import document as documents
from devcmd.store import keys, scripts
from devcmd.store.reads import Read
from devcmd.store.scripts import Scripts, slot_client
from devcmd.store.southbound import TimerIndex

PIPELINE_CHUNK = 1000  # commands per round trip when a status filter fans out over devices
ORDINAL_CACHE_SIZE = 100_000
# Most ids per run of read_commands.lua: bounds one run, and Lua's unpack (about 8,000 values).
READ_CHUNK = 1000


class CommandStore:
    def __init__(self, redis: Redis, scripts: Scripts, buckets: int) -> None:
        self.redis = redis
        self.scripts = scripts
        self.timers = TimerIndex(redis, buckets)
        self._ordinals: dict[tuple[str, str], int] = {}

    def create(self, record: dict, due_ms: int, max_pending: int) -> bool:
        """Queue a command; False if a command with its id exists already (nothing changed).
        Raises DeviceNotFound, PendingLimitReached.

        Three slots, in this order: the application-level indexes (the command map entry of
        the device's ordinal), the timer index, the device's script, then the timer index
        again. If the script refuses, the indexes are removed; if the process dies in between,
        readers skip the dangling entry (no record behind it) and the timer tick finds nothing
        due on the device. On one server all of it is one pipeline (one round trip; the server
        runs it in order); on a cluster, one step per slot. The device's ordinal is known
        before (remembered per process; the first command of a device asks for it).
        """
        app_id, device_id = record["appId"], record["deviceId"]
        ordinal = self.ordinal(app_id, device_id)
        if scripts.pipelined(self.redis):
            added, code = self._create_at_once(record, ordinal, due_ms, max_pending)
        else:
            added, code = self._create_in_steps(record, ordinal, due_ms, max_pending)
        if code >= 0:
            return code == 1
        if added:
            self._unindex(app_id, record["commandId"])
        if code == -1:
            self.timers.forget_unknown(app_id, device_id)
            self._forget_unknown_device(app_id, device_id)
            raise errors.DeviceNotFound()
        raise errors.PendingLimitReached()

    def _script_args(self, record: dict, due_ms: int, max_pending: int) -> list:
        """The ARGV of `create_command.lua`."""
        return [
            record["commandId"],
            record["creationTime"],
            max_pending,
            record["callbackUrl"] or "",
            due_ms,
            documents.encode(record),
            keys.CALLBACK_URLS_PER_DEVICE,
        ]

    def _create_at_once(
        self, record: dict, ordinal: int, due_ms: int, max_pending: int
    ) -> tuple[bool, int]:
        """One server: (whether this call added the indexes, the script's code), the steps of
        `_create_in_steps` in one pipeline."""
        app_id, device_id, command_id = record["appId"], record["deviceId"], record["commandId"]
        script = self.scripts.create_command
        script_keys = self.create_keys(app_id, device_id)
        args = self._script_args(record, due_ms, max_pending)
        pipe = self.redis.pipeline(transaction=False)
        self._queue_index(pipe, app_id, device_id, command_id, ordinal)
        self.timers.queue_schedule(pipe, app_id, device_id, due_ms)
        scripts.queue(pipe, script, script_keys, args)
        self.timers.queue_schedule(pipe, app_id, device_id, due_ms)
        replies = pipe.execute(raise_on_error=False)
        added, answer = replies[0] == 1, replies[3]
        if isinstance(answer, NoScriptError):
            # The script runs again alone (see scripts.reply), and the timer after it, so a
            # tick in between cannot hide it.
            undo = (lambda: self._unindex(app_id, command_id)) if added else (lambda: None)
            with faults.undone_if_refused(undo):
                answer = scripts.reply(answer, script, script_keys, args)
            self.timers.schedule(app_id, device_id, due_ms)
        elif isinstance(answer, Exception):
            if added and faults.refusal(answer):
                self._unindex(app_id, command_id)  # refused: the script ran none of it
            raise answer
        for reply in replies[:3] + replies[4:]:
            if isinstance(reply, Exception):  # an index or a timer write that failed
                raise reply
        return added, answer[0]

    def _create_in_steps(
        self, record: dict, ordinal: int, due_ms: int, max_pending: int
    ) -> tuple[bool, int]:
        """A cluster: (whether the indexes were added, the script's code), slot by slot."""
        app_id, device_id, command_id = record["appId"], record["deviceId"], record["commandId"]
        # Only indexes this call added are removed on a refusal: a second attempt at the same
        # command (Idempotency-Key) must never unindex the first attempt's command.
        pipe = self.redis.pipeline(transaction=True)  # both in the application's slot
        self._queue_index(pipe, app_id, device_id, command_id, ordinal)
        added = bool(pipe.execute()[0])
        undo = (lambda: self._unindex(app_id, command_id)) if added else (lambda: None)
        # Before the script, so a crash in between cannot lose the timer; after it, so a tick
        # racing with the script cannot hide it.
        self.timers.schedule(app_id, device_id, due_ms)
        script_keys = self.create_keys(app_id, device_id)
        args = self._script_args(record, due_ms, max_pending)
        with faults.undone_if_refused(undo):
            code = self.scripts.create_command(keys=script_keys, args=args)[0]
        self.timers.schedule(app_id, device_id, due_ms)
        return added, code

    def ordinal(self, app_id: str, device_id: str) -> int:
        """The device's number in its application (what the command map stores), given on its
        first command and remembered per process (it never changes). Raises DeviceNotFound
        rather than numbering a device id the application never had."""
        found = self._ordinals.get((app_id, device_id))
        if found is None:
            found = self.redis.hget(keys.app_device_ordinals(app_id), f"d:{device_id}")
            if found is None and not self.redis.exists(keys.device(app_id, device_id)):
                raise errors.DeviceNotFound()
            if found is None:
                found = self.scripts.device_ordinal(
                    keys=[keys.app_device_ordinals(app_id)], args=[device_id]
                )
            if len(self._ordinals) >= ORDINAL_CACHE_SIZE:
                self._ordinals.clear()  # bounded; a miss costs one round trip
            self._ordinals[app_id, device_id] = found = int(found)
        return found

    @staticmethod
    def create_keys(app_id: str, device_id: str) -> list[str]:
        """The KEYS of `create_command.lua` for one device."""
        return keys.for_device(
            app_id,
            device_id,
            keys.device,
            keys.pending,
            keys.statuses,
            keys.callbacks,
            keys.device_commands,
            keys.documents,
            keys.expiry,
            keys.in_status("PENDING"),
            keys.callback_urls,
        )

    @staticmethod
    def _queue_index(
        pipe: Pipeline, app_id: str, device_id: str, command_id: str, ordinal: int
    ) -> None:
        """Map the command to its device's ordinal in the command map (the first answer: 1 if it
        was not mapped yet; a second attempt at the same command keeps the first's entry) and
        list the device among those that have had commands."""
        pipe.hsetnx(keys.command_devices(app_id, command_id), command_id, ordinal)
        pipe.sadd(keys.app_command_device_ids(app_id), device_id)

    def _unindex(self, app_id: str, command_id: str) -> None:
        self.redis.hdel(keys.command_devices(app_id, command_id), command_id)

    def _forget_unknown_device(self, app_id: str, device_id: str) -> None:
        """Drop a device id the application never had from its command devices, so made-up
        ids do not pile up (such an id can never gain commands, see `forget_unknown`)."""
        if not self.redis.exists(keys.device(app_id, device_id)):
            self.redis.srem(keys.app_command_device_ids(app_id), device_id)

    def status(self, app_id: str, device_id: str, command_id: str) -> str | None:
        return self.statuses(app_id, device_id, [command_id])[0]

    def window(self, app_id: str, device_id: str, start: int, end: int) -> tuple[int, int]:
        """(rank of the newest, how many) of the device's commands created in [start, end],
        ranks counted newest first: a window read by rank costs O(log n) per chunk."""
        index = keys.device_commands(app_id, device_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(index, f"({end}", "+inf")
        pipe.zcount(index, start, end)
        newer, count = pipe.execute()
        return newer, count

    def ids_by_rank(self, app_id: str, device_id: str, first: int, last: int) -> list[str]:
        """The device's command ids from rank `first` to `last` (inclusive), newest first."""
        return self.redis.zrevrange(keys.device_commands(app_id, device_id), first, last)

    def statuses(self, app_id: str, device_id: str, ids: list[str]) -> list[str | None]:
        """The commands' statuses, in order (None where unknown), in one round trip."""
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.statuses(app_id, device_id), ids)
        pipe.zmscore(keys.pending(app_id, device_id), ids)
        return list(map(status_of, *pipe.execute()))

    def device_of(self, app_id: str, command_id: str) -> str | None:
        """The device of one of the application's commands, from its id alone (one call)."""
        script_keys = [
            keys.command_devices(app_id, command_id),
            keys.app_device_ordinals(app_id),
            keys.app_command_devices(app_id),
        ]
        return self.scripts.command_device(keys=script_keys, args=[command_id])

    def cancel(self, app_id: str, device_id: str, command_id: str, now: int) -> None:
        """Cancel one PENDING command. Raises CommandNotFound or CommandNotCancellable."""
        script_keys = keys.for_device(
            app_id,
            device_id,
            keys.statuses,
            keys.pending,
            keys.callbacks,
            keys.outbox,
            keys.device_commands,
            keys.in_status("PENDING"),
            keys.in_status("CANCELED"),
            keys.finished,
        )
        code, *rest = self.scripts.cancel_command(keys=script_keys, args=[command_id, now])
        if code == -1:
            raise errors.CommandNotFound()
        if code == -2:
            raise errors.CommandNotCancellable(rest[0])

    def load(self, app_id: str, pairs: Iterable[tuple[str, str]]) -> list[dict]:
        """Read (deviceId, commandId) pairs, in order, with one script run per device
        (lua/read_commands.lua) in one round trip per server; unknown ones are skipped."""
        by_device: dict[str, list[str]] = defaultdict(list)
        order = list(pairs)
        for device_id, command_id in order:
            by_device[device_id].append(command_id)
        chunks = [
            (device_id, ids[first : first + READ_CHUNK])
            for device_id, ids in by_device.items()
            for first in range(0, len(ids), READ_CHUNK)
        ]
        calls = [(self.read_keys(app_id, dev), ["ids", *ids]) for dev, ids in chunks]
        replies = scripts.read_each(self.redis, self.scripts.read_commands, calls)
        found: dict[tuple[str, str], dict] = {}
        for (device_id, _), (_, *rows) in zip(chunks, replies, strict=True):
            for record in documents.records(app_id, device_id, rows):
                found[device_id, record["commandId"]] = record
        return [found[pair] for pair in order if pair in found]

    @staticmethod
    def read_keys(app_id: str, device_id: str) -> list[str]:
        """The KEYS of `read_commands.lua` for one device."""
        return keys.for_device(
            app_id,
            device_id,
            keys.device_commands,
            keys.documents,
            keys.statuses,
            keys.pending,
            keys.lifecycle,
            keys.callbacks,
            keys.callback_urls,
        )

    def page(
        self, app_id: str, device_id: str | None, start: int, end: int, offset: int, limit: int
    ) -> tuple[int, list[dict]]:
        """Commands created in [start, end], newest first: (total matching, one page); without
        a device, merged from the command indexes of every device that has had commands. One
        device's total and page are read by one script run, from the same moment. `limit` is at
        most READ_CHUNK (ValueError)."""
        if limit > READ_CHUNK:
            raise ValueError(f"a page holds at most {READ_CHUNK} commands, not {limit}")
        if device_id:
            script_keys = self.read_keys(app_id, device_id)
            args = ["page", start, end, offset, limit]
            return _page(app_id, device_id, self.scripts.read_commands(keys=script_keys, args=args))
        devices = sorted(self.redis.smembers(keys.app_command_device_ids(app_id)))
        sources = [(dev, keys.device_commands(app_id, dev)) for dev in devices]
        return self._sources_page(app_id, sources, (start, end), offset, limit)

    def page_read(
        self, app_id: str, device_id: str, start: int, end: int, offset: int, limit: int
    ) -> Read[tuple[int, list[dict]]]:
        """`page` of one device as a `Read`, to send along with another step (the script by its
        sha, on the device's slot)."""
        if limit > READ_CHUNK:
            raise ValueError(f"a page holds at most {READ_CHUNK} commands, not {limit}")
        script_keys = self.read_keys(app_id, device_id)
        script = self.scripts.read_commands
        command = ("evalsha", script.sha, len(script_keys), *script_keys)
        command += ("page", start, end, offset, limit)
        return Read((command,), lambda replies: _page(app_id, device_id, replies[0]))

    def page_by_status(
        self,
        app_id: str,
        device_id: str | None,
        statuses: Sequence[str],
        window: tuple[int, int],
        offset: int,
        limit: int,
    ) -> tuple[int, list[dict]]:
        """Commands now in one of `statuses`, created in [start, end] (`window`), newest first:
        (exact total, one page), read from the per-status indexes of the device, or of every
        device of the application that has had commands.

        Costs one ZCOUNT per (device, status) and at most min(its count, offset + limit) ids
        from each, never a read of commands in other statuses; the indexes are first brought up
        to date with the sweeps' status debt (work the sweeps left, done once per command).
        Records show their status when loaded: one that moved on since the index was read is
        answered with its new status.
        """
        if device_id:
            return self._device_page(app_id, device_id, statuses, window, offset, limit)
        devices = sorted(self.redis.smembers(keys.app_command_device_ids(app_id)))
        self.settle(app_id, devices)
        sources = [(dev, keys.in_status(s)(app_id, dev)) for dev in devices for s in statuses]
        return self._sources_page(app_id, sources, window, offset, limit)

    def _sources_page(
        self,
        app_id: str,
        sources: list[tuple[str, str]],
        window: tuple[int, int],
        offset: int,
        limit: int,
    ) -> tuple[int, list[dict]]:
        """Commands created in [start, end] (`window`) in any of the (deviceId, zset by
        creation ms) `sources`, newest first: (exact total, one page). One ZCOUNT per source
        and at most min(its count, offset + limit) ids from each."""
        start, end = window
        counts = self._fan_out(sources, lambda pipe, source: pipe.zcount(source[1], start, end))
        total = sum(counts)
        if offset >= total:
            return total, []
        live = [(dev, key, n) for (dev, key), n in zip(sources, counts, strict=True) if n]
        skip = offset if len(live) == 1 else 0  # one source needs no merge: read the page alone
        runs = self._fan_out(
            live,
            # No source can give the page more than offset + limit entries.
            lambda pipe, run: pipe.zrevrangebyscore(
                run[1], end, start, skip, min(run[2], offset + limit) - skip, withscores=True
            ),
        )
        runs = [
            [(ms, cid, dev) for cid, ms in run] for (dev, _, _), run in zip(live, runs, strict=True)
        ]
        return total, self._merged_page(app_id, runs, offset - skip, limit)

    def _device_page(
        self,
        app_id: str,
        device_id: str,
        statuses: Sequence[str],
        window: tuple[int, int],
        offset: int,
        limit: int,
    ) -> tuple[int, list[dict]]:
        """One device: counts and candidate ids of every asked status in one transaction (a
        single slot) that first pays what is left of its status debt, so total and page come
        from the same moment."""
        skip = offset if len(statuses) == 1 else 0  # one status needs no merge
        self.settle(app_id, [device_id])
        take = offset + limit - skip
        replies = self._settled_runs(app_id, device_id, statuses, window, skip, take)
        runs = [[(ms, cid, device_id) for cid, ms in run] for run in replies[1::2]]
        return sum(replies[0::2]), self._merged_page(app_id, runs, offset - skip, limit)

    def _settled_runs(
        self,
        app_id: str,
        device_id: str,
        statuses: Sequence[str],
        window: tuple[int, int],
        skip: int,
        take: int,
    ) -> list:
        """In one transaction: the rest of the device's status debt paid, then per status its
        count in [start, end] (`window`) and `take` of its (id, creation ms), newest first,
        after the first `skip`."""
        start, end = window
        debt_keys = self.debt_keys(app_id, device_id)

        def run() -> list:
            pipe = slot_client(self.redis, debt_keys[0]).pipeline(transaction=True)
            # By sha: a script handed to a pipeline would make redis-py ask SCRIPT EXISTS first,
            # one more round trip on every query.
            scripts.queue(pipe, self.scripts.settle_statuses, debt_keys, [0])
            for status in statuses:
                index = keys.in_status(status)(app_id, device_id)
                pipe.zcount(index, start, end)
                pipe.zrevrangebyscore(index, end, start, skip, take, withscores=True)
            return pipe.execute(raise_on_error=False)

        replies = run()
        if isinstance(replies[0], NoScriptError):  # the server lost its scripts: load, again
            self.scripts.settle_statuses(keys=debt_keys, args=[0])
            replies = run()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies[1:]

    def settle(self, app_id: str, device_ids: list[str]) -> None:
        """Bring the devices' per-status indexes up to date with what sweeps did (their status
        debt), one entry (at most one sweep batch) per script run so Redis is never held long."""
        owing = self._fan_out(
            device_ids, lambda pipe, dev: pipe.llen(keys.status_debt(app_id, dev))
        )
        for device_id, entries in zip(device_ids, owing, strict=True):
            while entries:
                entries = self.scripts.settle_statuses(
                    keys=self.debt_keys(app_id, device_id), args=[1]
                )

    @staticmethod
    def debt_keys(app_id: str, device_id: str) -> list[str]:
        """The KEYS of settle_statuses.lua for one device."""
        return keys.for_device(
            app_id,
            device_id,
            keys.status_debt,
            keys.device_commands,
            *map(keys.in_status, ("PENDING", "CANCELED", "EXPIRED")),
        )

    def _fan_out(self, items: list, read: Callable[[Pipeline, Any], object]) -> list:
        """`read(pipe, item)` for every item, in round trips of PIPELINE_CHUNK commands."""
        replies: list = []
        for first in range(0, len(items), PIPELINE_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for item in items[first : first + PIPELINE_CHUNK]:
                read(pipe, item)
            replies.extend(pipe.execute())
        return replies

    def _merged_page(self, app_id: str, runs: list[list], offset: int, limit: int) -> list[dict]:
        """Merge newest-first runs of (creation ms, commandId, deviceId) as one zset would order
        them (ties by id, descending) and load entries [offset, offset + limit)."""
        merged = heapq.merge(*runs, reverse=True)
        chosen = itertools.islice(merged, offset, offset + limit)
        return self.load(app_id, ((dev, cid) for _, cid, dev in chosen))


def status_of(written: str | None, queued: float | None) -> str | None:
    """A command's status from its status hash entry and its pending queue score: a PENDING
    command has no hash entry, the queue holds exactly the PENDING ones (lua/status_of.lua)."""
    return written or ("PENDING" if queued is not None else None)


def _page(app_id: str, device_id: str, answer: list) -> tuple[int, list[dict]]:
    """(total, records) from `read_commands.lua`'s answer to a page of one device."""
    total, *rows = answer
    return total, documents.records(app_id, device_id, rows)
