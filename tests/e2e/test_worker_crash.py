"""A worker SIGKILLed in the middle of a 50,000-command revocation sweep: the task still ends
SUCCESS with exact counts, every command is cancelled once, and every command's CANCELED callback
arrives, at most the delivery batches in flight at the kill arriving twice.

Real processes on 127.0.0.1: gunicorn, Celery beat, a Celery worker consuming both queues (killed,
then replaced), the session's redis-server and an HTTP callback receiver. The killed worker's
unacked messages only come back after the broker's visibility timeout (an hour), so the sweep is
resumed by beat's `resume-stalled-revocations` job (every 15 s), with STALL_SECONDS short.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from devcmd.config import Config
from devcmd.domain import commands, notifications
from devcmd.domain.delivery.transport import CONCURRENCY
from devcmd.domain.devices import register
from devcmd.domain.ids import new_id
from devcmd.embedded import free_port
from devcmd.services import Services
from devcmd.store import document, keys
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.processes import (
    PROCESSES,
    Process,
    child_env,
    start_beat,
    start_web,
    start_worker,
    wait_ready,
)
from tests.e2e.receiver import Delivery, Receiver

pytestmark = pytest.mark.e2e

COMMANDS = 50_000
# 12,500 sweep batches: seconds of sweeping even on a fast server (Valkey swept 5,000 batches
# of 10 in about a second), so the kill lands mid-way.
SWEEP_BATCH = 4
POOL = 2  # pool processes of the e2e worker (tests.e2e.processes.start_worker)
SENDER_CONCURRENCY = CONCURRENCY  # POSTs in flight per pool process (delivery.Sender)
WORKER_SETTINGS = {
    "sweep_batch": SWEEP_BATCH,
    "sweep_step_seconds": 0.5,  # a flush (and delivery tasks) every half second of sweeping
    "stall_seconds": 1,  # beat's resume job re-enqueues a task idle this long
    "callback_retry_schedule": "0.2,0.2,0.2",
    # a delivery task that died with its worker is sent again this long after it was handed out
    "callback_lease_seconds": 20,
}
KILL_AT = 0.3  # kill once this share of the scope is cancelled and callbacks are flowing
CREATE_CHUNK = 1000
RECOVERY_TIMEOUT = 40.0  # beat's resume job runs every 15 s
TASK_TIMEOUT = 60.0
CALLBACK_TIMEOUT = 90.0
# Stop waiting once no callback came for this long: longer than the two ways a callback lost
# with the worker comes back, its lease (callback_lease_seconds above) and beat's drain of the
# outboxes (every 30 s). Only a failing run waits it out; a passing one returns at its last
# callback.
CALLBACK_QUIET = 45.0
SETTLE = 2.0  # seconds to keep listening after the last expected callback, to catch duplicates
# Sent but not recorded when the worker died: the delivery tasks each pool process was running.
MAX_DUPLICATES = POOL * min(
    notifications.NOTIFICATIONS_PER_TASK, notifications.EVENTS_PER_DRAIN * SWEEP_BATCH
)


@dataclass
class CrashStack:
    """gunicorn and beat for the whole test; workers started (and killed) by the test."""

    base_url: str
    worker_env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start_worker(self) -> Process:
        """A worker consuming both queues, logging to its own `worker-<n>/celery-worker.log`."""
        log_dir = self.log_dir / f"worker-{len(self.processes)}"
        log_dir.mkdir()
        worker = start_worker(self.worker_env, log_dir)
        self.processes.append(worker)
        return worker

    def wait_ready(self) -> None:
        wait_ready(self.base_url, self.processes)


@pytest.fixture
def crash_stack(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> CrashStack:
    """gunicorn, beat and a first worker, started but not waited for; all stopped at the end,
    including workers the test starts later."""
    port = free_port()
    worker_env = child_env(redis_url, tmp_path / "home", **WORKER_SETTINGS)
    stack = CrashStack(f"http://127.0.0.1:{port}", worker_env, tmp_path)
    request.node.stash[PROCESSES] = stack.processes
    try:
        stack.processes.append(start_web(port, child_env(redis_url, tmp_path / "home"), tmp_path))
        stack.processes.append(start_beat(worker_env, tmp_path))
        stack.start_worker()
        yield stack
    finally:
        for process in stack.processes:
            process.stop()


@pytest.fixture
def svc(redis_url: str) -> Services:
    """The test's own view of the data store (callbacks to 127.0.0.1 allowed)."""
    config = Config().with_(redis_url=redis_url, callback_allow_private=True)
    services = Services.from_config(config)
    yield services
    services.close()


def queue_commands(
    svc: Services, app_id: str, device_id: str, count: int, callback_url: str
) -> list[str]:
    """Queue `count` PENDING commands with a callbackUrl; returns their ids in queue order.

    The first goes through `commands.create`; the rest reuse its record and run the same
    `create_command` script with the same keys, pipelined (the domain function makes four round
    trips per command: 50,000 of them would take about a minute here).
    """
    command = {"serviceId": "Switch", "method": "SET_LEVEL", "paras": {"level": 0}}
    first = commands.create(svc, app_id, device_id, command, {"callbackUrl": callback_url})
    template = {name: value for name, value in first.items() if name != "status"}
    now, due = template["creationTime"], template["creationTime"] + template["expireTime"] * 1000
    script_keys = svc.commands.create_keys(app_id, device_id)
    limit = svc.config.max_pending_per_device
    ids = [first["commandId"]]
    for start in range(1, count, CREATE_CHUNK):
        chunk = [new_id() for _ in range(start, min(start + CREATE_CHUNK, count))]
        pipe = svc.redis.pipeline(transaction=False)
        ordinal = svc.commands.ordinal(app_id, device_id)
        for command_id in chunk:  # as CommandStore.create maps each command to its device
            pipe.hset(keys.command_devices(app_id, command_id), command_id, ordinal)
        for level, command_id in enumerate(chunk, start):
            record = template | {"commandId": command_id, "paras": {"level": level}}
            urls = keys.CALLBACK_URLS_PER_DEVICE
            args = [command_id, now, limit, callback_url, due, document.encode(record), urls]
            svc.scripts.create_command(keys=script_keys, args=args, client=pipe)
        replies = pipe.execute()
        assert {reply[0] for reply in replies[len(chunk) :]} == {1}, "a command was not created"
        ids += chunk
    return ids


def current(oc: OceanConnect, task_id: str) -> dict:
    """The task as `GET deviceCommandCancelTasks?taskId=` shows it."""
    response = oc.query_cancel_task(task_id)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]


def wait_mid_sweep(oc: OceanConnect, receiver: Receiver, task_id: str, at_least: int) -> dict:
    """Poll until the task is RUNNING with `at_least` <= cancelledCount < totalCount once
    callbacks have started arriving (so delivery tasks are in flight too; the asyncio sender
    delivers in bursts, so two polls may see the same count while a batch is on the wire)."""
    deadline = time.monotonic() + 30
    while True:
        task = current(oc, task_id)
        cancelled, total = int(task["cancelledCount"]), int(task["totalCount"])
        arriving = len(receiver.deliveries()) > 0
        if task["status"] == "RUNNING" and at_least <= cancelled < total and arriving:
            return task
        assert task["status"] in {"WAITING", "RUNNING"}, f"finished before the kill: {task}"
        assert time.monotonic() < deadline, f"no progress to {at_least}: {task}"
        time.sleep(0.02)


def kill_group(worker: Process) -> None:
    """SIGKILL the worker's whole process group (main process and pool children)."""
    os.killpg(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait(10)
    deadline = time.monotonic() + 5
    while True:
        try:
            os.killpg(worker.popen.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "a pool child outlived SIGKILL"
        time.sleep(0.05)


def wait_resumed(oc: OceanConnect, task_id: str, after: int) -> dict:
    """Poll until the task has cancelled more than `after`, or finished."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        task = current(oc, task_id)
        if int(task["cancelledCount"]) > after or task["status"] not in {"WAITING", "RUNNING"}:
            return task
        assert time.monotonic() < deadline, f"not resumed after {RECOVERY_TIMEOUT} s: {task}"
        time.sleep(0.1)


def wait_callbacks(receiver: Receiver, command_ids: set[str]) -> None:
    """Wait until every command has had a callback, or none came for CALLBACK_QUIET seconds.

    Polls cheaply: the receiver's threads share this process's GIL.
    """
    deadline = time.monotonic() + CALLBACK_TIMEOUT
    count, changed = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - changed < CALLBACK_QUIET:
        deliveries = receiver.deliveries()
        if len(deliveries) != count:
            count, changed = len(deliveries), time.monotonic()
        if count >= len(command_ids) and command_ids <= {
            d["commandId"] for d in bodies(deliveries)
        }:
            return
        time.sleep(0.5)


@pytest.fixture
def keepalive_receiver() -> Receiver:
    """The e2e receiver; it speaks HTTP/1.1, so the workers' connection pools keep connections
    open: about twice the callbacks per second of one connection per POST, which 50,000 need."""
    server = Receiver().start()
    yield server
    server.stop()


def bodies(deliveries: list[Delivery]) -> list[dict]:
    """The parsed bodies; a POST cut off by the kill arrives truncated and is left out."""
    return [d.body for d in deliveries if isinstance(d.body, dict)]


def undelivered(svc: Services, app_id: str, device_id: str) -> Counter:
    """Notification records not delivered, by state and whether a retry is scheduled."""
    records = svc.redis.hgetall(keys.notifications(app_id, device_id)).values()
    bucket = keys.bucket(device_id, svc.config.index_buckets)
    due = set(svc.redis.zrange(keys.notifications_due(bucket), 0, -1))
    return Counter(
        (r["state"], r["attemptCount"], f"{app_id}/{device_id}/{r['id']}" in due)
        for r in map(orjson.loads, records)
        if r["state"] != "delivered"
    )


def report(request: pytest.FixtureRequest, *lines: str) -> None:
    """Show the measured numbers on the terminal, also when the test passes."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(f"  {line}")


def test_sweep_and_callbacks_survive_a_worker_killed_mid_sweep(
    request: pytest.FixtureRequest,
    crash_stack: CrashStack,
    svc: Services,
    application: dict[str, str],
    keepalive_receiver: Receiver,
) -> None:
    receiver = keepalive_receiver
    started = time.monotonic()
    app_id = application["appId"]
    device_id = register(svc, app_id, "meter-crash", None, None)["deviceId"]
    command_ids = queue_commands(svc, app_id, device_id, COMMANDS, receiver.url())
    queued = time.monotonic()
    crash_stack.wait_ready()
    oc = OceanConnect(crash_stack.base_url, app_id, application["secret"])
    assert oc.login().status_code == 200

    created = oc.create_cancel_task(device_id)
    assert created.status_code == 201, created.text
    task_id = created.json()["taskId"]
    assert created.json()["totalCount"] == COMMANDS
    opened = time.monotonic()
    at_kill = wait_mid_sweep(oc, receiver, task_id, int(COMMANDS * KILL_AT))
    kill_group(crash_stack.processes[-1])
    killed = time.monotonic()
    after_kill = current(oc, task_id)
    received_at_kill = len(receiver.deliveries())
    crash_stack.start_worker()
    resumed_task = wait_resumed(oc, task_id, int(after_kill["cancelledCount"]))
    resumed = time.monotonic()
    finished = oc.wait_cancel_task(task_id, timeout=TASK_TIMEOUT)
    done = time.monotonic()
    wait_callbacks(receiver, set(command_ids))
    called_back = time.monotonic()
    time.sleep(SETTLE)
    deliveries = receiver.deliveries()
    oc.close()

    whole = [d for d in deliveries if isinstance(d.body, dict)]
    per_command = Counter(d.body["commandId"] for d in whole)
    duplicates = sum(n - 1 for n in per_command.values())
    report(
        request,
        f"queued {COMMANDS} commands in {queued - started:.1f} s, task opened at "
        f"{opened - started:.1f} s; killed {killed - opened:.1f} s later at cancelledCount "
        f"{at_kill['cancelledCount']} ({after_kill['cancelledCount']} just after, "
        f"{received_at_kill} callbacks received)",
        f"after the kill: sweep resumed in {resumed - killed:.1f} s (cancelledCount "
        f"{resumed_task['cancelledCount']}), SUCCESS in {done - killed:.1f} s, callbacks done in "
        f"{called_back - killed:.1f} s",
        f"{len(deliveries)} callbacks ({len(deliveries) - len(whole)} truncated by the kill) for "
        f"{len(per_command)} commands: {duplicates} duplicates (bound {MAX_DUPLICATES}); "
        f"total {time.monotonic() - started:.1f} s",
    )
    assert (finished["status"], finished["cancelledCount"], finished["totalCount"]) == (
        "SUCCESS",
        COMMANDS,
        COMMANDS,
    )
    statuses = svc.redis.hgetall(keys.statuses(app_id, device_id))
    assert statuses == dict.fromkeys(command_ids, "CANCELED")
    assert svc.redis.zcard(keys.pending(app_id, device_id)) == 0
    records = svc.redis.hgetall(keys.notifications(app_id, device_id))
    assert set(records) == {f"msg_{command_id}_CANCELED" for command_id in command_ids}
    assert all(d.status == 204 for d in deliveries)
    assert all(d.body["result"]["resultCode"] == "CANCELED" for d in whole)
    assert len(deliveries) - len(whole) <= POOL * SENDER_CONCURRENCY
    missing = len(set(command_ids) - set(per_command))
    stuck = undelivered(svc, app_id, device_id)
    assert not missing, f"{missing} commands without a callback; undelivered records: {stuck}"
    webhook_ids = {(d.body["commandId"], d.headers["webhook-id"]) for d in whole}
    assert len(webhook_ids) == COMMANDS, "a duplicate callback came with another webhook-id"
    assert duplicates <= MAX_DUPLICATES, f"{duplicates} duplicates (bound {MAX_DUPLICATES})"
