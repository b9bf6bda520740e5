"""The command and revocation state machine against a real Redis, driven by hypothesis.

Random interleavings of create, fetch, ack, result, single cancel, task open, sweep batches and
timer ticks (on a simulated clock) run against one real Redis; after every step everything the
store keeps is read back and compared with a Python model, and the guarantees of SPEC section 6
are checked on what Redis says: one status per command, terminal states final, nothing in a
task's scope ever handed out, nothing both handed out and cancelled, exact task counts. The
per-status indexes must hold exactly the model's commands of each status (the proof that the
status filter's counts are exact), and status queries answer what the model selects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from devcmd import errors
from devcmd.clock import now_ms
from devcmd.config import Config
from devcmd.domain import auth, commands, devices, revocations, southbound
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.notifications import Event
from devcmd.store.revocations import Batch
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]

COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
URL = "http://127.0.0.1:9/cb"  # recorded in the outbox only: nothing is ever sent to it
ACK_MS = 5_000
DEVICES = 2
TERMINAL = frozenset({"SUCCESSFUL", "FAILED", "TIMEOUT", "CANCELED", "EXPIRED"})
FINISHED = frozenset({"SUCCESS", "PART_SUCCESS", "FAILED"})
SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None)


@dataclass
class Cmd:
    command_id: str
    device: int
    seq: int
    max_retransmit: int
    url: bool
    created: int
    status: str = "PENDING"
    issued: int = 0
    events: list[str] = field(default_factory=list)


@dataclass
class Device:
    """The model of one device's queue, fence and timer indexes (id -> score)."""

    device_id: str
    seq: int = 0
    fence: int = 0
    expiry: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    retransmit: dict[str, int] = field(default_factory=dict)


@dataclass
class Task:
    task_id: str
    device: int
    scope: list[str]
    status: str = "WAITING"
    swept: set[str] = field(default_factory=set)


def due_first(index: dict[str, int], now: int, limit: int) -> list[tuple[int, str]]:
    """What `ZRANGEBYSCORE index -inf now LIMIT 0 limit` returns: by score, ties by member."""
    return sorted((due, cid) for cid, due in index.items() if due <= now)[:limit]


def owed(in_status: dict[str, dict[str, int]], debt: list[str]) -> None:
    """Apply a device's status debt (what sweeps left for settle_statuses.lua) to the indexes
    read from Redis: each id it names must still be in the PENDING index."""
    for entry in debt:
        status, listed = entry.split(" ")
        for cid in listed.split(","):
            in_status[status][cid] = in_status["PENDING"].pop(cid)


class CommandMachine(RuleBasedStateMachine):
    svc: Services  # set by the test, shared by every example (Redis is flushed per example)

    created = Bundle("commands")
    opened = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.svc.redis.flushall()
        self.app = auth.create_application(self.svc, app_id="app-sm", secret="s")["appId"]
        self.devices = [
            Device(devices.register(self.svc, self.app, f"node-{i}", None, None)["deviceId"])
            for i in range(DEVICES)
        ]
        self.cmds: dict[str, Cmd] = {}
        self.tasks: dict[str, Task] = {}
        self.now = now_ms()
        self.handed_out: set[str] = set()
        self.singly_cancelled: set[str] = set()
        self.terminal_seen: dict[str, str] = {}

    # -- model helpers ---------------------------------------------------------------------

    def move(self, cmd: Cmd, status: str, *, outbox_always: bool = False) -> None:
        """Change the model's status; the outbox gets an event if the command has a
        callbackUrl, or always for a sweep (one entry per batch; the drain skips those without
        a callbackUrl, so the sweep need not read each command)."""
        assert cmd.status not in TERMINAL, f"model bug: {cmd.command_id} left {cmd.status}"
        cmd.status = status
        if cmd.url or outbox_always:
            cmd.events.append(status)

    def issue(self, dev: Device, cmd: Cmd, sent: list[str]) -> None:
        cmd.issued += 1
        dev.in_flight[cmd.command_id] = self.now + ACK_MS
        sent.append(cmd.command_id)

    def queue(self, device: int) -> list[Cmd]:
        """The device's PENDING commands in queue order (what the pending zset must hold)."""
        pending = [c for c in self.cmds.values() if c.device == device and c.status == "PENDING"]
        return sorted(pending, key=lambda c: c.seq)

    def scoped(self) -> set[str]:
        return {cid for task in self.tasks.values() for cid in task.scope}

    def ids_of(self, device: int):
        dev = self.devices[device]
        return self.app, dev.device_id

    # -- rules -------------------------------------------------------------------------------

    @rule(
        target=created,
        device=st.integers(0, DEVICES - 1),
        expire=st.sampled_from([0, 1, 5, 30, None]),
        max_retransmit=st.integers(0, 3),
        url=st.booleans(),
    )
    def create(self, device, expire, max_retransmit, url) -> str:
        dev = self.devices[device]
        options = {"expireTime": expire, "maxRetransmit": max_retransmit}
        options["callbackUrl"] = URL if url else None
        record = commands.create(self.svc, self.app, dev.device_id, COMMAND, options)
        cid = record["commandId"]
        dev.seq += 1
        assert self.svc.redis.zscore(keys.pending(*self.ids_of(device)), cid) == dev.seq
        # creation reads the wall clock: take the due time it computed as given
        dev.expiry[cid] = int(self.svc.redis.zscore(keys.expiry(*self.ids_of(device)), cid))
        self.cmds[cid] = Cmd(cid, device, dev.seq, max_retransmit, url, record["creationTime"])
        return cid

    @rule(device=st.integers(0, DEVICES - 1), limit=st.integers(1, 4))
    def fetch(self, device, limit) -> None:
        dev = self.devices[device]
        _, got = self.svc.southbound.fetch(*self.ids_of(device), self.now, limit, ACK_MS)
        sent: list[str] = []
        for _, cid in sorted((due, cid) for cid, due in dev.retransmit.items())[:limit]:
            del dev.retransmit[cid]
            self.issue(dev, self.cmds[cid], sent)
        for cmd in self.queue(device):
            if len(sent) == limit:
                break
            if cmd.seq <= dev.fence:
                continue
            if dev.expiry.pop(cmd.command_id) <= self.now:
                self.move(cmd, "EXPIRED")
            else:
                self.move(cmd, "SENT")
                self.issue(dev, cmd, sent)
        assert got == sent
        assert not set(got) & self.scoped(), "a fenced command was handed out"
        self.handed_out.update(got)

    @rule(cid=created)
    def ack(self, cid) -> None:
        cmd = self.cmds[cid]
        app_id, device_id = self.ids_of(cmd.device)
        if cmd.status not in ("SENT", "DELIVERED"):
            with pytest.raises(errors.IllegalTransition) as refused:
                southbound.ack(self.svc, app_id, device_id, cid)
            assert refused.value.status == cmd.status
            return
        southbound.ack(self.svc, app_id, device_id, cid)
        if cmd.status == "SENT":
            self.move(cmd, "DELIVERED")
            self.devices[cmd.device].in_flight.pop(cid, None)
            self.devices[cmd.device].retransmit.pop(cid, None)

    @rule(cid=created)
    def ack_as_another_device(self, cid) -> None:
        app_id, device_id = self.ids_of((self.cmds[cid].device + 1) % DEVICES)
        with pytest.raises(errors.CommandNotFound):
            southbound.ack(self.svc, app_id, device_id, cid)

    @rule(cid=created, code=st.sampled_from(["SUCCESSFUL", "FAILED"]))
    def result(self, cid, code) -> None:
        cmd = self.cmds[cid]
        app_id, device_id = self.ids_of(cmd.device)
        if cmd.status not in ("SENT", "DELIVERED"):
            with pytest.raises(errors.IllegalTransition) as refused:
                southbound.finish(self.svc, app_id, device_id, cid, code, {"n": 1})
            assert refused.value.status == cmd.status
            return
        southbound.finish(self.svc, app_id, device_id, cid, code, {"n": 1})
        self.move(cmd, code)
        self.devices[cmd.device].in_flight.pop(cid, None)
        self.devices[cmd.device].retransmit.pop(cid, None)

    @rule(cid=created)
    def cancel(self, cid) -> None:
        cmd = self.cmds[cid]
        if cmd.status != "PENDING":
            with pytest.raises(errors.CommandNotCancellable) as refused:
                commands.cancel(self.svc, self.app, cid)
            assert refused.value.status == cmd.status
            return
        assert commands.cancel(self.svc, self.app, cid)["status"] == "CANCELED"
        self.move(cmd, "CANCELED")
        self.singly_cancelled.add(cid)

    @rule(target=opened, device=st.integers(0, DEVICES - 1))
    def open_task(self, device) -> str:
        dev = self.devices[device]
        scope = [c.command_id for c in self.queue(device) if c.seq > dev.fence]
        answer = revocations.open_task(self.svc, *self.ids_of(device))
        task_id = answer["taskId"]
        assert (answer["status"], answer["totalCount"]) == ("WAITING", str(len(scope)))
        assert [c["commandId"] for c in answer["deviceCommands"]] == scope
        # what Redis itself holds in the task's range right after the 201
        lo, hi = self.svc.redis.hmget(keys.task(*self.ids_of(device), task_id), "lo", "hi")
        assert self.svc.redis.zrangebyscore(keys.pending(*self.ids_of(device)), f"({lo}", hi) == (
            scope
        )
        dev.fence = dev.seq
        self.tasks[task_id] = Task(task_id, device, scope)
        return task_id

    @rule(task_id=opened, size=st.integers(1, 4))
    def sweep_batch(self, task_id, size) -> None:
        task = self.tasks[task_id]
        got = self.svc.revocations.sweep_batch(*self.ids_of(task.device), task_id, self.now, size)
        assert got == self.model_sweep(task, size)

    @rule(task_id=opened)
    def sweep_to_end(self, task_id) -> None:
        """Batches of the configured size until done, as the worker's sweep runs them."""
        task = self.tasks[task_id]
        size = self.svc.config.sweep_batch
        ids = self.ids_of(task.device)
        while not (got := self.svc.revocations.sweep_batch(*ids, task_id, self.now, size)).done:
            pass
        while not (expected := self.model_sweep(task, size)).done:
            pass
        assert (got.status, got.cancelled, got.total) == (
            expected.status,
            expected.cancelled,
            expected.total,
        )

    @rule(
        device=st.integers(0, DEVICES - 1),
        advance=st.integers(0, 20_000),
        limit=st.integers(1, 5),
    )
    def tick(self, device, advance, limit) -> None:
        """Advance the simulated clock and run the device's due timers at that time."""
        self.now += advance
        dev = self.devices[device]
        got = self.svc.southbound.tick(*self.ids_of(device), self.now, limit)
        expired = retransmitting = timed_out = 0
        for _, cid in due_first(dev.expiry, self.now, limit):
            del dev.expiry[cid]
            if self.cmds[cid].status == "PENDING":
                self.move(self.cmds[cid], "EXPIRED")
                expired += 1
        for due, cid in due_first(dev.in_flight, self.now, limit):
            del dev.in_flight[cid]
            cmd = self.cmds[cid]
            if cmd.issued <= cmd.max_retransmit:
                dev.retransmit[cid] = due
                retransmitting += 1
            else:
                self.move(cmd, "TIMEOUT")
                timed_out += 1
        next_due = min([*dev.expiry.values(), *dev.in_flight.values()], default=None)
        assert (got.expired, got.retransmitting, got.timed_out, got.next_due) == (
            expired,
            retransmitting,
            timed_out,
            next_due,
        )

    @rule(
        statuses=st.sets(st.sampled_from(commands.STATUSES), min_size=1),
        device=st.one_of(st.none(), st.integers(0, DEVICES - 1)),
        page_no=st.integers(0, 3),
        size=st.integers(1, 3),
    )
    def query_by_status(self, statuses, device, page_no, size) -> None:
        """The status filter's total and page are the model's, newest first, ties by id."""
        device_id = None if device is None else self.devices[device].device_id
        total, page = commands.query(
            self.svc, self.app, device_id, 0, 2**53, page_no, size, sorted(statuses)
        )
        matching = [
            c
            for c in self.cmds.values()
            if c.status in statuses and (device is None or c.device == device)
        ]
        matching.sort(key=lambda c: (c.created, c.command_id), reverse=True)
        assert total == len(matching)
        expected = matching[page_no * size : (page_no + 1) * size]
        assert [(r["commandId"], r["status"]) for r in page] == [
            (c.command_id, c.status) for c in expected
        ]

    def model_sweep(self, task: Task, size: int) -> Batch:
        cancelled = len(task.swept)
        if task.status in FINISHED:
            return Batch(0, task.status, cancelled, len(task.scope), True)
        taken = [cid for cid in task.scope if self.cmds[cid].status == "PENDING"][:size]
        dev = self.devices[task.device]
        batch = []
        for cid in taken:
            if cid in dev.expiry and dev.expiry[cid] <= self.now:  # past due, timer not run yet
                del dev.expiry[cid]
                self.move(self.cmds[cid], "EXPIRED", outbox_always=True)
            else:
                self.move(self.cmds[cid], "CANCELED", outbox_always=True)
                batch.append(cid)
        task.swept.update(batch)
        cancelled, total = len(task.swept), len(task.scope)
        if len(taken) == size:
            task.status = "RUNNING"
            return Batch(len(batch), "RUNNING", cancelled, total, False)
        task.status = "PART_SUCCESS"
        if cancelled == total:
            task.status = "SUCCESS"
        elif cancelled == 0:
            task.status = "FAILED"
        return Batch(len(batch), task.status, cancelled, total, True, finished_now=True)

    # -- checks after every step --------------------------------------------------------------

    def read_device(self, device: int) -> dict:
        app_id, device_id = self.ids_of(device)
        pipe = self.svc.redis.pipeline(transaction=False)
        pipe.hgetall(keys.statuses(app_id, device_id))
        for index in (keys.pending, keys.in_flight, keys.retransmit, keys.expiry):
            pipe.zrange(index(app_id, device_id), 0, -1, withscores=True)
        pipe.hgetall(keys.lifecycle(app_id, device_id))
        pipe.lrange(keys.outbox(app_id, device_id), 0, -1)
        pipe.hget(keys.device(app_id, device_id), "fence")
        pipe.lrange(keys.status_debt(app_id, device_id), 0, -1)
        for status in commands.STATUSES:
            pipe.zrange(keys.in_status(status)(app_id, device_id), 0, -1, withscores=True)
        names = ("status", "pending", "in_flight", "retransmit", "expiry", "life", "outbox")
        replies = pipe.execute()
        found = dict(zip(names, replies, strict=False))
        found["fence"] = int(replies[len(names)] or 0)
        for name in ("pending", "in_flight", "retransmit", "expiry"):
            found[name] = {cid: int(score) for cid, score in found[name]}
        # A PENDING command has no status hash entry: the pending queue answers for it.
        assert not found["status"].keys() & found["pending"].keys()
        found["status"] |= dict.fromkeys(found["pending"], "PENDING")
        indexes = replies[len(names) + 2 :]
        found["in_status"] = {
            status: {cid: int(score) for cid, score in index}
            for status, index in zip(commands.STATUSES, indexes, strict=True)
        }
        owed(found["in_status"], replies[len(names) + 1])
        return found

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        for device, dev in enumerate(self.devices):
            found = self.read_device(device)
            mine = [c for c in self.cmds.values() if c.device == device]
            assert found["status"] == {c.command_id: c.status for c in mine}
            assert found["pending"] == {c.command_id: c.seq for c in self.queue(device)}
            assert found["in_flight"] == dev.in_flight
            assert found["retransmit"] == dev.retransmit
            assert found["expiry"] == dev.expiry
            assert found["fence"] == dev.fence
            assert found["in_status"] == {
                status: {c.command_id: c.created for c in mine if c.status == status}
                for status in commands.STATUSES
            }
            issued = {cid: orjson.loads(life)["issuedTimes"] for cid, life in found["life"].items()}
            assert issued == {c.command_id: c.issued for c in mine if c.issued}
            events = defaultdict(list)
            for event in map(Event.parse, found["outbox"]):
                for cid in event.command_ids:
                    events[cid].append(event.status)
            assert events == {c.command_id: c.events for c in mine if c.events}

    @invariant()
    def terminal_states_never_change(self) -> None:
        for device in range(DEVICES):
            for cid, status in self.read_device(device)["status"].items():
                assert self.terminal_seen.get(cid, status) == status, f"{cid} left a final state"
                if status in TERMINAL:
                    self.terminal_seen[cid] = status

    @invariant()
    def nothing_handed_out_was_scoped_or_cancelled(self) -> None:
        cancelled = set()
        for device in range(DEVICES):
            statuses = self.read_device(device)["status"]
            cancelled |= {cid for cid, status in statuses.items() if status == "CANCELED"}
        assert not self.handed_out & self.scoped()
        assert not self.handed_out & cancelled

    @invariant()
    def task_counts_are_exact(self) -> None:
        for task in self.tasks.values():
            record = revocations.get(self.svc, self.app, task.task_id)
            statuses = self.read_device(task.device)["status"]
            cancelled, total = int(record["cancelledCount"]), int(record["totalCount"])
            by_sweep = {
                cid
                for cid in task.scope
                if statuses[cid] == "CANCELED" and cid not in self.singly_cancelled
            }
            assert cancelled == len(by_sweep) == len(task.swept)
            assert total == len(task.scope)
            assert record["status"] == task.status
            if record["status"] not in FINISHED:
                continue
            assert all(statuses[cid] != "PENDING" for cid in task.scope)
            if record["status"] == "SUCCESS":
                assert cancelled == total
            elif record["status"] == "FAILED":
                assert cancelled == 0 < total
                assert record["reason"]
            else:
                assert 0 < cancelled < total
                assert record["reason"].startswith(f"{total - cancelled} command(s)")


def test_random_interleavings_keep_every_guarantee(redis_url, broker_url):
    config = Config().with_(
        redis_url=redis_url,
        celery_broker_url=broker_url,
        sweep_batch=3,
        callback_allow_private=True,
    )
    svc = Services.from_config(config)
    try:
        machine = type("Machine", (CommandMachine,), {"svc": svc})
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        svc.close()
