"""Benchmark: callback delivery throughput and latency from one worker process.

Run: `.venv/bin/python bench/callbacks.py`. It starts its own redis-server and a keep-alive
receiver process on 127.0.0.1, cancels 20,000 commands that have a callbackUrl, drains the outbox
into delivery tasks, and runs those tasks one after another in this process exactly as one
Celery worker process does (`devcmd.domain.delivery.deliver` with the per-process Sender). It
prints notifications per second and the p50/p99 latency of the HTTP attempts (from the kept
attempt history), then checks that every notification is recorded as delivered.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devcmd.config import Config
from devcmd.domain import auth, commands, delivery, devices, notifications, revocations
from devcmd.embedded import free_port, temporary_server
from devcmd.services import Services
from devcmd.store import keys

console = Console()
HERE = Path(__file__).parent
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


class CollectingBroker:
    """Collects delivery tasks instead of publishing them, so this process runs them itself."""

    def __init__(self) -> None:
        self.tasks: list[list[list[str]]] = []

    def deliver(self, refs: list[list[str]]) -> None:
        self.tasks.append(refs)

    def flush(self, *args, **kwargs) -> None: ...

    def sweep(self, *args, **kwargs) -> None: ...

    def close(self) -> None: ...


def seed(svc: Services, count: int, url: str) -> str:
    """`count` commands with a callback, cancelled by a revocation task, outbox drained."""
    device_id = devices.register(svc, "bench", "receiver-bench", None, None)["deviceId"]
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"queueing {count:,} commands", total=count)
        for _ in range(count):
            commands.create(svc, "bench", device_id, COMMAND, {"callbackUrl": url})
            progress.advance(bar)
    task_id = revocations.open_task(svc, "bench", device_id)["taskId"]
    while not revocations.sweep(svc, "bench", device_id, task_id).done:
        pass
    notifications.flush(svc, "bench", device_id)
    return device_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=16, help="sender threads per process")
    args = parser.parse_args()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, str(HERE / "receiver.py"), str(port)])
    try:
        with temporary_server() as server:
            time.sleep(0.3)
            run(server.url, f"http://127.0.0.1:{port}/callback", args)
    finally:
        receiver.terminate()
        receiver.wait()


def run(url: str, callback_url: str, args: argparse.Namespace) -> None:
    broker = CollectingBroker()
    config = Config().with_(redis_url=url, callback_allow_private=True)
    svc = Services.from_config(config, broker=broker)
    auth.create_application(svc, app_id="bench", secret="bench-secret")
    device_id = seed(svc, args.notifications, callback_url)
    sender = delivery.Sender(threads=args.threads)
    started = time.perf_counter()
    delivered = 0
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("delivering", total=args.notifications)
        for refs in broker.tasks:
            counts = delivery.deliver(svc, sender, refs)
            delivered += counts.get("delivered", 0)
            progress.advance(bar, len(refs))
    elapsed = time.perf_counter() - started
    sender.close()
    records = [r for r in notifications_of(svc, device_id) if r]
    latencies = sorted(a["latencyMs"] for r in records for a in r["attempts"])
    if delivered != args.notifications or {r["state"] for r in records} != {"delivered"}:
        raise RuntimeError(f"only {delivered} of {args.notifications} delivered")
    table = Table(title="devcmd callback delivery benchmark (one worker process)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("notifications delivered", f"{delivered:,}")
    table.add_row("throughput", f"{delivered / elapsed:,.0f} notifications/s")
    table.add_row("attempt latency p50", f"{statistics.median(latencies):.1f} ms")
    table.add_row("attempt latency p99", f"{latencies[int(len(latencies) * 0.99)]:.1f} ms")
    console.print(table)


def notifications_of(svc: Services, device_id: str) -> list[dict | None]:
    ids = svc.redis.hkeys(keys.notifications("bench", device_id))
    return svc.notifications.load("bench", device_id, ids)


if __name__ == "__main__":
    main()
