"""Guarantees 1-3 of SPEC section 6 with real OS processes racing on one device's queue.

Separate processes share the session's real Redis, each with its own services: creators keep
queueing commands while two fetchers take, acknowledge and finish what they get, a canceller
cancels single commands, a revoker opens revocation tasks and sweeps some of them, a sweeper
sweeps every unfinished task too (so sweeps of one task also race), and a ticker runs the expiry
and ack timers. Each process returns what it did; afterwards the parent reads Redis through the
stores and checks: every command's outbox history is a legal path ending at its one status,
nothing handed out was cancelled, nothing in a task's scope was handed out after the task
opened, and every task finished with exact counts.

`DEVCMD_CONCURRENCY_COMMANDS` sets how many commands (half queued before the race, half during
it); `python -m bench.concurrency` runs the same race at benchmark size and prints rates.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import pytest

from devcmd import errors
from devcmd.clock import now_ms
from devcmd.config import Config
from devcmd.domain import commands, revocations, southbound
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.notifications import Event
from devcmd.store.revocations import TERMINAL
from tests import backends
from tests.unit.conftest import NullBroker

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]

COMMANDS = int(os.environ.get("DEVCMD_CONCURRENCY_COMMANDS", "10500"))
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
URL = "http://127.0.0.1:9/cb"  # every transition is recorded in the outbox; nothing is sent
# Fresh interpreters (no inherited Redis connections), forked from one server that imported
# this module once: starting a process costs milliseconds, not a second of imports.
PROCESSES = multiprocessing.get_context("forkserver")
PROCESSES.set_forkserver_preload([__name__])
NEXT = {
    "PENDING": {"SENT", "CANCELED", "EXPIRED"},
    "SENT": {"DELIVERED", "SUCCESSFUL", "FAILED", "TIMEOUT"},
    "DELIVERED": {"SUCCESSFUL", "FAILED"},
}
EVER = 2**62  # a time after everything: "every task"
# The 201 answer lists this many scoped commands: the whole scope of every task at the default
# size. (open_task.lua cannot list more than about 8,000: Lua's unpack limit, reported.)
INLINE = 7_000


def race_config(redis_url: str, broker_url: str | None = None) -> Config:
    """Small sweep batches and steps, a short ack timeout, and scopes listed in the answer."""
    return Config().with_(
        redis_url=redis_url,
        celery_broker_url=broker_url,
        callback_allow_private=True,
        sweep_batch=50,
        sweep_step_seconds=0.05,
        ack_timeout=0.5,
        task_inline_commands=INLINE,
        max_pending_per_device=10**8,
    )


@dataclass(frozen=True)
class Race:
    """What every process needs to build its own services, and how many of each role run."""

    config: Config
    app_id: str
    device_id: str
    commands: int = COMMANDS
    creators: int = 2
    fetchers: int = 2
    cancellers: int = 1
    revokers: int = 1
    sweepers: int = 1


@dataclass
class Outcome:
    """What the processes say they did, merged."""

    created: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)  # one entry per hand-out
    finished: list[tuple[str, str]] = field(default_factory=list)  # results Redis accepted
    cancelled: list[str] = field(default_factory=list)  # single cancels Redis accepted
    tasks: list[dict] = field(default_factory=list)  # {taskId, totalCount, scope: listed ids}
    refused: int = 0
    seconds: float = 0.0

    def add(self, report: dict) -> None:
        for name, value in report.items():
            setattr(self, name, getattr(self, name) + value)


# -- the roles: each runs in its own process until `stop` is set ------------------------------


def create_some(svc: Services, race: Race, count: int, stop) -> dict:
    """Queue `count` commands: most live 48 h, some expire within a second or two."""
    rng = random.Random()
    created = []
    for _ in range(count):
        roll = rng.random()
        expire = 1 if roll < 0.05 else 0 if roll < 0.07 else None
        options = {"callbackUrl": URL, "expireTime": expire, "maxRetransmit": rng.randint(0, 1)}
        created.append(
            commands.create(svc, race.app_id, race.device_id, COMMAND, options)["commandId"]
        )
    return {"created": created}


def fetch_some(svc: Services, race: Race, _: int, stop) -> dict:
    """Take commands as the device does, acknowledging and finishing some of them."""
    rng = random.Random()
    fetched, finished, refused = [], [], 0
    while not stop.is_set():
        got = southbound.fetch(svc, race.app_id, race.device_id, rng.randint(1, 8))
        for command in got:
            fetched.append(command["commandId"])
            try:
                finished += _deliver(svc, race, command["commandId"], rng)
            except errors.IllegalTransition:
                refused += 1  # the ack timer, or the other fetcher, got there first
        if not got:
            time.sleep(0.005)
    return {"fetched": fetched, "finished": finished, "refused": refused}


def _deliver(svc: Services, race: Race, command_id: str, rng: random.Random) -> list:
    """Ack and finish half, ack only a fifth, finish unacknowledged a tenth, leave the rest SENT."""
    roll = rng.random()
    if roll < 0.7:
        southbound.ack(svc, race.app_id, race.device_id, command_id)
    if roll < 0.5 or 0.7 <= roll < 0.8:
        code = rng.choice(southbound.RESULT_CODES)
        southbound.finish(svc, race.app_id, race.device_id, command_id, code, {"by": "race"})
        return [(command_id, code)]
    return []


def cancel_some(svc: Services, race: Race, _: int, stop) -> dict:
    """Cancel single commands picked at random, mostly among the PENDING ones."""
    rng = random.Random()
    pending = keys.pending(race.app_id, race.device_id)
    every = keys.device_commands(race.app_id, race.device_id)
    cancelled, refused = [], 0
    while not stop.wait(0.01):
        for command_id in svc.redis.zrandmember(rng.choice((pending, pending, every)), 2) or []:
            try:
                commands.cancel(svc, race.app_id, command_id)
                cancelled.append(command_id)
            except errors.CommandNotCancellable:
                refused += 1
    return {"cancelled": cancelled, "refused": refused}


def revoke_some(svc: Services, race: Race, _: int, stop) -> dict:
    """Open tasks every now and then; sweep half at once and leave half to the sweeper."""
    rng = random.Random()
    tasks = []
    while not stop.wait(rng.uniform(0.05, 0.4)):
        task = revocations.open_task(svc, race.app_id, race.device_id)
        scope = [command["commandId"] for command in task["deviceCommands"]]
        tasks.append(
            {"taskId": task["taskId"], "totalCount": int(task["totalCount"]), "scope": scope}
        )
        if rng.random() < 0.5:
            sweep_to_end(svc, race, task["taskId"])
    for task in tasks:  # the sweeper may have stopped before this process opened its last task
        sweep_to_end(svc, race, task["taskId"])
    return {"tasks": tasks}


def sweep_active(svc: Services, race: Race, _: int, stop) -> dict:
    """Sweep every unfinished task of the device in steps, as re-enqueued worker messages do.

    Tasks are found in the device's task index, which the opening Lua step writes: the active
    index is written before it (for recovery after a crash), so it may list a task not yet open.
    """
    while True:
        stopping = stop.is_set()
        listed = svc.revocations.ids_between(race.app_id, race.device_id, 0, EVER)
        tasks = svc.revocations.load(race.app_id, listed)
        active = [task["taskId"] for task in tasks if task["status"] not in TERMINAL]
        for task_id in active:
            revocations.sweep(svc, race.app_id, race.device_id, task_id)
        if stopping and not active:
            return {}
        if not active:
            time.sleep(0.005)


def tick_timers(svc: Services, race: Race, _: int, stop) -> dict:
    """Run the expiry and ack timers as beat does, only more often."""
    while not stop.wait(0.02):
        southbound.tick(svc)
    return {}


def sweep_to_end(svc: Services, race: Race, task_id: str) -> None:
    while not revocations.sweep(svc, race.app_id, race.device_id, task_id).done:
        pass


ROLES = {
    "create": create_some,
    "fetch": fetch_some,
    "cancel": cancel_some,
    "revoke": revoke_some,
    "sweep": sweep_active,
    "tick": tick_timers,
}


def _child(index: int, role: str, race: Race, count: int, start, stop, results) -> None:
    """A process's entry point: build services, wait for the others, run the role, report."""
    svc = Services.from_config(race.config, NullBroker())
    try:
        start.wait(timeout=120)
        results.put((index, ROLES[role](svc, race, count, stop)))
    except Exception:
        results.put((index, f"{role} process failed:\n{traceback.format_exc()}"))
    finally:
        svc.close()


# -- running the race -------------------------------------------------------------------------


def run_race(race: Race) -> Outcome:
    """Queue half the commands (creators in parallel), then race everything on the other half."""
    outcome = Outcome()
    upfront = race.commands // 2
    for report in run_processes(race, [("create", n) for n in split(upfront, race.creators)]):
        outcome.add(report)
    jobs = [("create", n) for n in split(race.commands - upfront, race.creators)]
    jobs += [("fetch", 0)] * race.fetchers + [("cancel", 0)] * race.cancellers
    jobs += [("revoke", 0)] * race.revokers + [("sweep", 0)] * race.sweepers + [("tick", 0)]
    started = time.perf_counter()
    for report in run_processes(race, jobs):
        outcome.add(report)
    outcome.seconds = time.perf_counter() - started
    return outcome


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def run_processes(race: Race, jobs: list[tuple[str, int]]) -> list[dict]:
    """One process per (role, count), released together; the others are stopped once every
    creator has reported. Returns their reports; fails with a child's traceback."""
    start, stop, results = PROCESSES.Barrier(len(jobs)), PROCESSES.Event(), PROCESSES.Queue()
    processes = [
        PROCESSES.Process(target=_child, args=(i, role, race, n, start, stop, results), daemon=True)
        for i, (role, n) in enumerate(jobs)
    ]
    creators = {i for i, (role, _) in enumerate(jobs) if role == "create"}
    for process in processes:
        process.start()
    reports: dict[int, dict] = {}
    try:
        while len(reports) < len(jobs):
            index, report = _next_report(results, processes, reports)
            assert isinstance(report, dict), report
            reports[index] = report
            if creators <= reports.keys():
                stop.set()
        for process in processes:
            process.join(timeout=30)
    finally:
        stop.set()
        for process in processes:
            if process.is_alive():
                process.terminate()
        results.close()
    return list(reports.values())


def _next_report(results, processes: list, reports: dict) -> tuple[int, dict | str]:
    """The next report; fails if a process died without one (its report gets 5 s to arrive)."""
    while True:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            dead = {i for i, p in enumerate(processes) if p.exitcode is not None} - reports.keys()
        if dead:
            try:
                return results.get(timeout=5)
            except queue.Empty:
                raise AssertionError(f"processes {sorted(dead)} died without a report") from None


# -- what the parent checks afterwards ------------------------------------------------------


def check(svc: Services, race: Race, outcome: Outcome) -> Counter:
    """Assert guarantees 1-3 on what Redis holds; returns how many commands end in each status."""
    status = statuses(svc, race, outcome.created)
    check_one_fate(svc, race, status, outcome)
    check_tasks(svc, race, status, outcome)
    return Counter(status.values())


def statuses(svc: Services, race: Race, created: list[str]) -> dict[str, str]:
    """commandId -> status of every created command; each has exactly one, and nothing else does."""
    app_id, device_id = race.app_id, race.device_id
    assert len(set(created)) == len(created), "a command id was handed out twice at creation"
    records = svc.commands.load(app_id, [(device_id, command_id) for command_id in created])
    assert len(records) == len(created), "a created command has no record or no status"
    written = svc.redis.hkeys(keys.statuses(app_id, device_id))
    queued = svc.redis.zrange(keys.pending(app_id, device_id), 0, -1)
    assert sorted(written + queued) == sorted(created)  # PENDING ones only in the queue
    assert svc.redis.zcard(keys.device_commands(app_id, device_id)) == len(created)
    return {record["commandId"]: record["status"] for record in records}


def histories(svc: Services, race: Race) -> dict[str, list[str]]:
    """Every status change recorded in the device's outbox (all commands have a callbackUrl)."""
    events: dict[str, list[str]] = {}
    for raw in svc.redis.lrange(keys.outbox(race.app_id, race.device_id), 0, -1):
        event = Event.parse(raw)
        for command_id in event.command_ids:
            events.setdefault(command_id, []).append(event.status)
    return events


def check_one_fate(svc: Services, race: Race, status: dict, outcome: Outcome) -> None:
    """Guarantee 1: each command's history is a legal path, ends at its status, and no command
    was both handed out and cancelled or accepted two results."""
    history = histories(svc, race)
    assert history.keys() <= status.keys(), "events for commands nobody created"
    for command_id, final in status.items():
        state = "PENDING"
        for event in history.get(command_id, []):
            assert event in NEXT.get(state, ()), f"{command_id}: {history[command_id]}"
            state = event
        assert state == final, f"{command_id}: history {history.get(command_id)}, status {final}"
    fetched = set(outcome.fetched)
    sent = {command_id for command_id, events in history.items() if "SENT" in events}
    assert fetched == sent, "what the fetchers got differs from what Redis recorded as SENT"
    both = sorted(c for c in fetched if status[c] == "CANCELED")
    assert not both, f"handed out and CANCELED: {both[:5]}"
    results = [command_id for command_id, _ in outcome.finished]
    assert len(results) == len(set(results)), "a command accepted two results"
    assert all(status[c] == code for c, code in outcome.finished)
    assert len(outcome.cancelled) == len(set(outcome.cancelled)), "a command cancelled twice"
    assert {status[c] for c in outcome.cancelled} <= {"CANCELED"}
    check_indexes(svc, race, status)


def check_indexes(svc: Services, race: Race, status: dict) -> None:
    """The queue holds exactly the PENDING commands; the ack indexes only SENT ones; each
    per-status index exactly the commands in its status, scored by their creation time."""
    app_id, device_id = race.app_id, race.device_id
    pending = {c for c, s in status.items() if s == "PENDING"}
    assert set(svc.redis.zrange(keys.pending(app_id, device_id), 0, -1)) == pending
    waiting = svc.redis.zrange(keys.in_flight(app_id, device_id), 0, -1)
    waiting += svc.redis.zrange(keys.retransmit(app_id, device_id), 0, -1)
    assert {status[c] for c in waiting} <= {"SENT"}
    svc.commands.settle(app_id, [device_id])  # what a status query does first
    assert svc.redis.llen(keys.status_debt(app_id, device_id)) == 0
    created = dict(
        svc.redis.zrange(keys.device_commands(app_id, device_id), 0, -1, withscores=True)
    )
    for name in commands.STATUSES:
        index = keys.in_status(name)(app_id, device_id)
        found = dict(svc.redis.zrange(index, 0, -1, withscores=True))
        expected = {c: created[c] for c, s in status.items() if s == name}
        assert found == expected, f"per-status index {name} differs from the status hash"


def check_tasks(svc: Services, race: Race, status: dict, outcome: Outcome) -> None:
    """Guarantees 2 and 3: scopes are disjoint and never handed out; every task finished and
    counted exactly what its sweep cancelled; together they account for every CANCELED.

    A scope larger than the answer's list is checked on the listed part (the commands a fetch
    ignoring the fence would hand out first) and through the sum of the counts.
    """
    app_id, device_id = race.app_id, race.device_id
    stored = {task_id for _, task_id in svc.revocations.ids_between(app_id, device_id, 0, EVER)}
    assert stored == {task["taskId"] for task in outcome.tasks}
    fetched, singly, scoped = set(outcome.fetched), set(outcome.cancelled), set()
    counted, whole = 0, True
    for opened in outcome.tasks:
        listed = set(opened["scope"])
        complete = len(listed) == opened["totalCount"]
        assert complete or len(listed) == race.config.task_inline_commands
        assert not listed & scoped, "two tasks scoped one command"
        # scoped commands were PENDING when the task opened: any hand-out of one came after
        leaked = sorted(listed & fetched)
        assert not leaked, f"handed out after task {opened['taskId']} opened: {leaked[:3]}"
        assert {status[c] for c in listed} <= {"CANCELED", "EXPIRED"}
        task = revocations.get(svc, app_id, opened["taskId"])
        assert task["status"] in TERMINAL, f"task never finished: {task}"
        swept = sum(status[c] == "CANCELED" and c not in singly for c in listed)
        check_task_count(task, swept, complete)
        check_task_status(task)
        scoped |= listed
        counted += int(task["cancelledCount"])
        whole = whole and complete
    cancelled = {c for c, s in status.items() if s == "CANCELED"}
    assert counted == len(cancelled) - len(singly), "cancelledCount sum != CANCELED - singly"
    assert not whole or cancelled <= scoped | singly, "CANCELED by no task and not singly"


def check_task_count(task: dict, swept: int, complete: bool) -> None:
    """cancelledCount is what the sweeps cancelled of the scope (at least that of a listed part)."""
    counted = int(task["cancelledCount"])
    message = f"{task}: cancelledCount {counted}, its sweeps cancelled {swept}"
    assert counted == swept if complete else counted >= swept, message


def check_task_status(task: dict) -> None:
    """SUCCESS = all of the scope cancelled, PART_SUCCESS = some, FAILED = none, with a reason."""
    total, cancelled = int(task["totalCount"]), int(task["cancelledCount"])
    if cancelled == total:
        assert task["status"] == "SUCCESS", task
    elif cancelled == 0:
        assert (task["status"], bool(task.get("reason"))) == ("FAILED", True), task
    else:
        assert task["status"] == "PART_SUCCESS", task
        assert f"{total - cancelled} command(s)" in task["reason"], task
    assert int(task["finishTime"]) >= int(task["creationTime"])


# -- the tests ------------------------------------------------------------------------------


def test_processes_racing_on_one_device_keep_every_guarantee(svc, redis_url, app_id, device_id):
    race = Race(race_config(redis_url, svc.config.celery_broker_url), app_id, device_id)
    outcome = run_race(race)
    ended = check(svc, race, outcome)
    assert ended.total() == race.commands > 0
    # the race really mixed: all of these happened (else the checks above proved little)
    mixed = {
        "handed out": len(outcome.fetched),
        "finished": len(outcome.finished),
        "cancelled singly": len(outcome.cancelled),
        "cancelled by sweeps": ended["CANCELED"] - len(outcome.cancelled),
        "tasks": len(outcome.tasks),
        "tasks with their whole scope listed": sum(
            len(task["scope"]) == task["totalCount"] for task in outcome.tasks
        ),
    }
    assert min(mixed.values()) > 0, mixed


def small_outcome(svc: Services, race: Race, meddle) -> Outcome:
    """A few commands fetched, finished, cancelled and revoked in this process by the race's
    domain calls; `meddle` runs between opening the task and fetching again."""
    app_id, device_id = race.app_id, race.device_id
    created = [
        commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": URL})["commandId"]
        for _ in range(8)
    ]
    fetched = [c["commandId"] for c in southbound.fetch(svc, app_id, device_id, 2)]
    southbound.finish(svc, app_id, device_id, fetched[0], "SUCCESSFUL", {})
    commands.cancel(svc, app_id, created[2])
    task = revocations.open_task(svc, app_id, device_id)
    meddle(svc, race)
    fetched += [c["commandId"] for c in southbound.fetch(svc, app_id, device_id, 2)]
    sweep_to_end(svc, race, task["taskId"])
    scope = [command["commandId"] for command in task["deviceCommands"]]
    return Outcome(
        created=created,
        fetched=fetched,
        finished=[(fetched[0], "SUCCESSFUL")],
        cancelled=[created[2]],
        tasks=[{"taskId": task["taskId"], "totalCount": len(scope), "scope": scope}],
    )


def _ignore_the_fence(svc: Services, race: Race) -> None:
    """What a fetch that ignored the fence would do: hand out commands of the open task."""
    svc.redis.hset(keys.device(race.app_id, race.device_id), "fence", 0)


def _cancel_a_sent_one(svc: Services, race: Race) -> None:
    """What a cancel that ignored status would do: a command handed out also ends CANCELED."""
    (command_id,) = svc.redis.zrange(keys.in_flight(race.app_id, race.device_id), 0, 0)
    svc.redis.hset(keys.statuses(race.app_id, race.device_id), command_id, "CANCELED")
    svc.redis.rpush(keys.outbox(race.app_id, race.device_id), f"CANCELED {now_ms()} {command_id}")


def _count_one_twice(svc: Services, race: Race) -> None:
    """What a retried sweep that counted a batch again would do."""
    (task_id,) = svc.redis.zrange(keys.device_tasks(race.app_id, race.device_id), 0, 0)
    svc.redis.hincrby(keys.task(race.app_id, race.device_id, task_id), "cancelledCount", 1)


def _skip_an_index_move(svc: Services, race: Race) -> None:
    """What a transition that forgot the per-status indexes would do."""
    app_id, device_id = race.app_id, race.device_id
    svc.commands.settle(app_id, [device_id])
    (command_id,) = svc.redis.zrange(keys.in_status("CANCELED")(app_id, device_id), 0, 0)
    svc.redis.zrem(keys.in_status("CANCELED")(app_id, device_id), command_id)


@pytest.mark.parametrize(
    ("meddle", "after", "complaint"),
    [
        pytest.param(_ignore_the_fence, None, "handed out after task", id="fence-ignored"),
        pytest.param(None, _cancel_a_sent_one, "'SENT', 'CANCELED'", id="double-fate"),
        pytest.param(None, _count_one_twice, "cancelledCount 6", id="count-doubled"),
        pytest.param(None, _skip_an_index_move, "per-status index CANCELED", id="index-stale"),
    ],
)
def test_the_checks_catch_a_broken_guarantee(
    svc, redis_url, app_id, device_id, meddle, after, complaint
):
    """The race's checks can fail: each forges one broken guarantee into a clean history."""
    race = Race(race_config(redis_url, svc.config.celery_broker_url), app_id, device_id)
    outcome = small_outcome(svc, race, meddle or (lambda *_: None))
    if after:
        check(svc, race, outcome)
        after(svc, race)
    with pytest.raises(AssertionError, match=complaint):
        check(svc, race, outcome)
