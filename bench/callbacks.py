"""Benchmark: callback delivery throughput and latency from one worker process.

Run from the repository root: `.venv/bin/python -m bench.callbacks` (or `make bench`). It starts
its own redis-server and a keep-alive receiver process on 127.0.0.1 (`bench.receiver`), first
measures the receiver alone with wrk (signed-callback-sized POSTs, as many connections as the
sender uses), so its ceiling is printed beside the delivery rate; then it cancels 20,000
commands that have a callbackUrl, drains the outbox into delivery tasks, and runs those tasks
one after another in this process exactly as one Celery worker process does
(`devcmd.domain.delivery.deliver` with the per-process Sender). It prints notifications per
second and the p50/p99 latency of the HTTP attempts (from the kept attempt history), then checks
that every notification is recorded as delivered.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
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
REPO = Path(__file__).resolve().parents[1]
TARGET = 3000  # notifications/s from one worker process
HEADROOM = 2  # the receiver alone must answer at least this many times faster
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
    parser.add_argument("--concurrency", type=int, default=64, help="POSTs in flight")
    parser.add_argument(
        "--profile", action="store_true", help="print where the sender's time goes (pyinstrument)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench.callbacks needs wrk: apt-get install wrk (Debian/Ubuntu package `wrk`)")
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)], cwd=REPO)
    try:
        with temporary_server() as server:
            time.sleep(0.5)
            url = f"http://127.0.0.1:{port}/callback"
            ceiling = receiver_ceiling(url, args.concurrency)
            run(server.url, url, args, ceiling)
    finally:
        receiver.terminate()
        receiver.wait()


def receiver_ceiling(url: str, connections: int, seconds: int = 3) -> float:
    """Requests/s the receiver answers alone: wrk POSTing bodies and headers of a signed
    callback's size over `connections` keep-alive connections."""
    script = "\n".join(
        [
            'wrk.method = "POST"',
            'wrk.body = string.rep("x", 150)',
            'wrk.headers["Content-Type"] = "application/json"',
            'wrk.headers["webhook-id"] = "msg_' + "0" * 32 + '_CANCELED"',
            'wrk.headers["webhook-timestamp"] = "1700000000"',
            'wrk.headers["webhook-signature"] = "v1,' + "A" * 44 + '"',
        ]
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as file:
        file.write(script)
        file.flush()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", file.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def run(url: str, callback_url: str, args: argparse.Namespace, ceiling: float) -> None:
    broker = CollectingBroker()
    config = Config().with_(redis_url=url, callback_allow_private=True)
    svc = Services.from_config(config, broker=broker)
    auth.create_application(svc, app_id="bench", secret="bench-secret")
    device_id = seed(svc, args.notifications, callback_url)
    sender = delivery.Sender(concurrency=args.concurrency)
    profilers = start_profiling(sender) if args.profile else []
    started, cpu = time.perf_counter(), time.process_time()
    delivered = 0
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("delivering", total=args.notifications)
        for refs in broker.tasks:
            counts = delivery.deliver(svc, sender, refs)
            delivered += counts.get("delivered", 0)
            progress.advance(bar, len(refs))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu  # this process's threads, the event loop's included
    for name, profiler in zip(
        ("delivery task (Redis, bookkeeping)", "event loop (HTTP)"), profilers, strict=False
    ):
        stop_profiling(sender, profiler, name)
    sender.close()
    records = [r for r in notifications_of(svc, device_id) if r]
    latencies = sorted(a["latencyMs"] for r in records for a in r["attempts"])
    if delivered != args.notifications or {r["state"] for r in records} != {"delivered"}:
        raise RuntimeError(f"only {delivered} of {args.notifications} delivered")
    table = Table(title="devcmd callback delivery benchmark (one worker process)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rate = delivered / elapsed
    table.add_row("receiver alone (wrk)", f"{ceiling:,.0f} requests/s")
    table.add_row("notifications delivered", f"{delivered:,}")
    table.add_row("throughput", f"{rate:,.0f} notifications/s")
    table.add_row("receiver ceiling / throughput", f"{ceiling / rate:.1f}x")
    # On a shared machine the sender rarely has a core to itself: its own CPU per notification
    # says what one process would do if it had.
    table.add_row("sender CPU per notification", f"{cpu / delivered * 1e6:,.0f} us")
    table.add_row("throughput per core of sender CPU", f"{delivered / cpu:,.0f} notifications/s")
    table.add_row("sender's share of a core", f"{cpu / elapsed:.0%}")
    table.add_row("attempt latency p50", f"{statistics.median(latencies):.1f} ms")
    table.add_row("attempt latency p99", f"{latencies[int(len(latencies) * 0.99)]:.1f} ms")
    console.print(table)
    verdict = "met" if rate >= TARGET else "MISSED"
    console.print(f"target {TARGET:,}/s: {verdict}")
    if ceiling < HEADROOM * rate:
        console.print(f"the receiver is within {HEADROOM}x of the sender: it may be the limit")


def start_profiling(sender: delivery.Sender) -> list:
    """pyinstrument on this thread (what a delivery task does around the HTTP) and on the
    sender's event loop thread (the HTTP and the per-attempt work)."""
    from pyinstrument import Profiler

    here, loop = Profiler(interval=0.0005), Profiler(interval=0.0005, async_mode="disabled")
    here.start()

    async def start() -> None:
        loop.start()

    sender.run(start())
    return [here, loop]


def stop_profiling(sender: delivery.Sender, profiler, name: str) -> None:
    async def stop() -> None:
        profiler.stop()

    if profiler.is_running and name.startswith("event loop"):
        sender.run(stop())
    elif profiler.is_running:
        profiler.stop()
    console.print(f"[bold]{name}[/bold]")
    print(profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False))


def notifications_of(svc: Services, device_id: str) -> list[dict | None]:
    ids = svc.redis.hkeys(keys.notifications("bench", device_id))
    return svc.notifications.load("bench", device_id, ids)


if __name__ == "__main__":
    main()
