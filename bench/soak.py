"""Soak: a steady load with short retention settings, to show Redis memory levels off.

Run: `.venv/bin/python -m bench.soak` (or `make soak`). It starts its own server (the embedded
Valkey, or `--binary PATH`), then for `--seconds` keeps creating commands at `--rate` per second
over `--devices` devices (a quarter with a callbackUrl to a receiver on 127.0.0.1), and in the
same process does what the workers and devices would: devices fetch, acknowledge and report
results, single commands are cancelled, revocation tasks are opened and swept, timers expire
commands, outboxes are drained and callbacks delivered, and retention runs every
`--retention-every` seconds with COMMAND_RETENTION = TASK_RETENTION = NOTIFICATION_RETENTION =
`--retention`. It samples `used_memory` and prints it as it goes; at the end it checks that the
last third of the run grew by less than 5% and that every revocation task ended with exact
counts (its cancelledCount is the number of its scope it cancelled), and exits non-zero if not.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from redis import Redis

from devcmd.config import Config
from devcmd.domain import (
    auth,
    commands,
    delivery,
    devices,
    notifications,
    retention,
    revocations,
    southbound,
)
from devcmd.embedded import temporary_server
from devcmd.receiver import parse, serving, wsgi_app
from devcmd.services import Services

COMMAND = {"serviceId": "Light", "method": "SET", "paras": {"level": 1}}
LEVEL_OFF = 0.05  # the last third may grow by less than this


class LocalBroker:
    """Keeps the jobs the domain enqueues, so this process runs them itself (no Celery)."""

    def __init__(self) -> None:
        self.sweeps: deque[tuple[str, str, str]] = deque()
        self.flushes: set[tuple[str, str]] = set()
        self.deliveries: deque[list[list[str]]] = deque()

    def sweep(self, app_id: str, device_id: str, task_id: str, countdown: float = 0) -> None:
        self.sweeps.append((app_id, device_id, task_id))

    def flush(self, app_id: str, device_id: str, countdown: float = 0) -> None:
        self.flushes.add((app_id, device_id))

    def deliver(self, refs: list[list[str]]) -> None:
        self.deliveries.append(refs)

    def close(self) -> None: ...


@dataclass
class Result:
    """What a soak run saw: memory samples (seconds, bytes) and the tasks' checks."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    inexact_tasks: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        """Growth of the last third: the mean of its last tenth of samples over the mean of its
        first tenth (means smooth out the allocator's and the load's short swings)."""
        third = self.samples[len(self.samples) * 2 // 3 :]
        tenth = max(1, len(third) // 10)
        start = sum(b for _, b in third[:tenth]) / tenth
        end = sum(b for _, b in third[-tenth:]) / tenth
        return end / start - 1

    @property
    def levels_off(self) -> bool:
        return self.growth < LEVEL_OFF and not self.inexact_tasks


class Soak:
    """One soak run's load on one store."""

    def __init__(self, svc: Services, broker: LocalBroker, url: str, device_count: int) -> None:
        self.svc, self.broker, self.url = svc, broker, url
        auth.create_application(svc, app_id="soak", secret="soak-secret")
        self.devices = [
            devices.register(svc, "soak", f"node-{n}", None, None)["deviceId"]
            for n in range(device_count)
        ]
        self.sender = delivery.Sender(concurrency=4)
        self.counter = itertools.count()
        self.result = Result(counts=dict.fromkeys(("created", "tasks", "delivered"), 0))

    def create(self, count: int) -> None:
        for _ in range(count):
            n = next(self.counter)
            options = {"expireTime": 2, "callbackUrl": self.url if n % 4 == 0 else None}
            device_id = self.devices[n % len(self.devices)]
            commands.create(self.svc, "soak", device_id, COMMAND, options)
        self.result.counts["created"] += count

    def serve(self, round_no: int) -> None:
        """Devices of one half (alternating) fetch, acknowledge and report; others cancel one."""
        for n, device_id in enumerate(self.devices):
            if (n + round_no) % 2:
                for sent in southbound.fetch(self.svc, "soak", device_id, 3):
                    command_id = sent["commandId"]
                    southbound.ack(self.svc, "soak", device_id, command_id)
                    code = "SUCCESSFUL" if hash(command_id) % 2 else "FAILED"
                    southbound.finish(self.svc, "soak", device_id, command_id, code, {})
            elif n % 5 == 0:
                self.cancel_one(device_id)

    def cancel_one(self, device_id: str) -> str | None:
        """Cancel the device's newest PENDING command, if any; returns its id."""
        pending = commands.query(self.svc, "soak", device_id, 0, 2**62, 0, 1, ["PENDING"])[1]
        if not pending:
            return None
        return commands.cancel(self.svc, "soak", pending[0]["commandId"])["commandId"]

    def revoke(self, device_id: str) -> None:
        """Open a task, cancel one of its scope singly, sweep it; check its counts are exact."""
        task = revocations.open_task(self.svc, "soak", device_id)
        scope = [c["commandId"] for c in task["deviceCommands"]]
        single = commands.cancel(self.svc, "soak", scope[0]) if len(scope) > 1 else None
        while self.broker.sweeps:
            app_id, dev, task_id = self.broker.sweeps.popleft()
            while not revocations.sweep(self.svc, app_id, dev, task_id).done:
                pass
        done = revocations.get(self.svc, "soak", task["taskId"])
        states = [commands.get(self.svc, "soak", c)["status"] for c in scope]
        swept = states.count("CANCELED") - (1 if single else 0)
        if int(done["totalCount"]) != len(scope) or int(done["cancelledCount"]) != swept:
            self.result.inexact_tasks.append(task["taskId"])
        self.result.counts["tasks"] += 1

    def background(self) -> None:
        """The workers' share: timers, outbox drains and callback deliveries."""
        southbound.tick(self.svc)
        while self.broker.flushes:
            notifications.flush(self.svc, *self.broker.flushes.pop())
        notifications.drain_dirty(self.svc)
        while self.broker.deliveries:
            counts = delivery.deliver(self.svc, self.sender, self.broker.deliveries.popleft())
            self.result.counts["delivered"] += counts.get("delivered", 0)
        notifications.retry_due(self.svc)

    def close(self) -> None:
        self.sender.close()


def used_memory(redis: Redis) -> int:
    return int(redis.info("memory")["used_memory"])


def run(
    redis_url: str,
    seconds: float,
    rate: int = 1000,
    device_count: int = 20,
    keep: float = 1.0,
    every: float = 0.5,
    report=print,
) -> Result:
    """Soak the store at `redis_url` (emptied first) for `seconds`; `report` gets a line a
    second. Commands are created at `rate` a second; retention keeps finished work `keep`
    seconds and runs every `every` seconds."""
    config = Config().with_(
        redis_url=redis_url,
        callback_allow_private=True,
        command_retention=keep,
        task_retention=keep,
        notification_retention=keep,
        callback_lease_seconds=5.0,
    )
    broker = LocalBroker()
    svc = Services.from_config(config, broker)
    svc.redis.flushall()
    with serving(wsgi_app(lambda event: None, verifier=parse, dedup=None)) as receiver:
        soak = Soak(svc, broker, receiver.url("/callback"), device_count)
        try:
            _load(soak, seconds, rate, every, report)
        finally:
            soak.close()
            svc.close()
    return soak.result


def _load(soak: Soak, seconds: float, rate: int, every: float, report) -> None:
    start = time.monotonic()
    next_sample = next_retention = next_report = start
    for round_no in itertools.count():
        now = time.monotonic()
        if now - start >= seconds:
            break
        soak.create(max(0, int((now - start) * rate) - soak.result.counts["created"]))
        soak.serve(round_no)
        if round_no % 10 == 0:
            soak.revoke(soak.devices[round_no // 10 % len(soak.devices)])
        soak.background()
        if now >= next_retention:
            retention.forget_due(soak.svc)
            next_retention = now + every
        if now >= next_sample:
            soak.result.samples.append((now - start, used_memory(soak.svc.redis)))
            next_sample = now + 0.25
        if now >= next_report:
            t, memory = soak.result.samples[-1]
            report(f"{t:6.1f} s  used_memory {memory / 1e6:7.2f} MB  {soak.result.counts}")
            next_report = now + 1.0
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", type=int, default=300, help="commands created per second")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--retention", type=float, default=5.0, help="seconds kept when done")
    parser.add_argument("--retention-every", type=float, default=1.0)
    parser.add_argument("--binary", help="redis-server or valkey-server to run instead")
    args = parser.parse_args()
    with temporary_server(binary=args.binary) as server:
        result = run(
            server.url, args.seconds, args.rate, args.devices, args.retention, args.retention_every
        )
    third = result.samples[len(result.samples) * 2 // 3 :]
    print(
        f"last third: {third[0][1] / 1e6:.2f} MB at {third[0][0]:.0f} s -> "
        f"{third[-1][1] / 1e6:.2f} MB at {third[-1][0]:.0f} s; growth {result.growth:+.1%} "
        f"(must be < {LEVEL_OFF:.0%}); tasks {result.counts['tasks']}, "
        f"inexact {len(result.inexact_tasks)}"
    )
    sys.exit(0 if result.levels_off else 1)


if __name__ == "__main__":
    main()
