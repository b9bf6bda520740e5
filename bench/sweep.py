"""Benchmark: how fast a revocation sweep cancels a large backlog, and what opening a task costs.

Run from the repository root: `.venv/bin/python -m bench.sweep` (or `make bench`). It starts its
own redis-server (AOF on, as in production) in a temporary directory, so it needs nothing
running. Figures are compared as ratios measured in this one run.

1. Sweep: 100,000 PENDING commands of one device, one task, swept in batches exactly as the worker
   does (`devcmd.domain.revocations.sweep`), against a naive baseline that cancels the same number
   of commands one Lua call at a time (`cancel_command`, the single-cancel path).
2. Creation: median latency of `POST .../deviceCommandCancelTasks` through the Flask app (real
   Redis, real Celery broker publish) for a device with 10 pending vs one with 100,000 pending.
   Between repetitions the device's fence is put back, so every repetition sees the full backlog.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app import create_app
from devcmd import errors
from devcmd.clock import now_ms
from devcmd.config import Config
from devcmd.domain import auth, commands, devices, revocations
from devcmd.embedded import temporary_server
from devcmd.services import Services
from devcmd.store import keys

console = Console()
COMMAND = {"serviceId": "Light", "method": "SET", "paras": {"level": 1}}
OPTIONS = {"callbackUrl": "http://127.0.0.1:9/cb"}


def seed(svc: Services, app_id: str, count: int, label: str) -> str:
    """Register a device and queue `count` commands on it, with a progress bar."""
    device_id = devices.register(svc, app_id, f"node-{label}", None, None)["deviceId"]
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"queueing {count:,} commands ({label})", total=count)
        for i in range(count):
            commands.create(svc, app_id, device_id, COMMAND, OPTIONS)
            if i % 1000 == 999:
                progress.advance(bar, 1000)
    return device_id


def bench_sweep(svc: Services, app_id: str, count: int) -> float:
    """Commands cancelled per second by the batched sweep."""
    device_id = seed(svc, app_id, count, f"sweep-{count}")
    task = revocations.open_task(svc, app_id, device_id)
    started = time.perf_counter()
    while not revocations.sweep(svc, app_id, device_id, task["taskId"]).done:
        pass
    elapsed = time.perf_counter() - started
    final = revocations.get(svc, app_id, task["taskId"])
    if final["status"] != "SUCCESS" or int(final["cancelledCount"]) != count:
        raise RuntimeError(f"sweep ended wrong: {final}")
    return count / elapsed


def bench_naive(svc: Services, app_id: str, count: int) -> float:
    """Commands cancelled per second one at a time (one Lua call per command)."""
    device_id = seed(svc, app_id, count, f"naive-{count}")
    ids = svc.redis.zrange(keys.pending(app_id, device_id), 0, -1)
    started = time.perf_counter()
    for command_id in ids:
        svc.commands.cancel(app_id, device_id, command_id, now_ms())
    return count / (time.perf_counter() - started)


def creation_latency(client, headers: dict, svc: Services, app_id: str, device_id: str, runs: int):
    """Median seconds of one task-creation request, with the backlog restored between runs."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.post(
            "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks",
            json={"deviceId": device_id},
            headers=headers,
        )
        samples.append(time.perf_counter() - started)
        assert response.status_code == 201, response.json
        svc.redis.hset(keys.device(app_id, device_id), "fence", 0)
    return statistics.median(samples), response.json["totalCount"]


def bench_creation(svc: Services, app_id: str, secret: str, big: int, runs: int) -> tuple:
    small_device = seed(svc, app_id, 10, "small")
    big_device = seed(svc, app_id, big, f"big-{big}")
    client = create_app(services=svc).test_client()
    token = auth.login(svc, app_id, secret)["accessToken"]
    headers = {"app_key": app_id, "Authorization": f"Bearer {token}"}
    creation_latency(client, headers, svc, app_id, small_device, 5)  # warm up
    small = creation_latency(client, headers, svc, app_id, small_device, runs)
    large = creation_latency(client, headers, svc, app_id, big_device, runs)
    return small, large


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=10_000, help="commands for the baseline")
    parser.add_argument("--runs", type=int, default=101, help="creation repetitions per device")
    args = parser.parse_args()
    with temporary_server() as server:
        run(server.url, args)


def run(url: str, args: argparse.Namespace) -> None:
    # Flow control stays on (its cost is part of a create call) but high enough for any --runs.
    config = Config().with_(
        redis_url=url,
        max_pending_per_device=10 * args.commands,
        callback_allow_private=True,
        rate_limit_per_minute=1_000_000,
    )
    svc = Services.from_config(config)
    try:
        creds = auth.create_application(svc, app_id="bench", secret="bench-secret")
    except errors.AppExists:
        creds = {"appId": "bench", "secret": "bench-secret"}
    sweep_rate = bench_sweep(svc, creds["appId"], args.commands)
    naive_rate = bench_naive(svc, creds["appId"], args.naive)
    (small, small_n), (large, large_n) = bench_creation(
        svc, creds["appId"], creds["secret"], args.commands, args.runs
    )
    table = Table(title="devcmd revocation benchmark")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"sweep, {args.commands:,} commands", f"{sweep_rate:,.0f} commands/s")
    table.add_row(f"naive per-command cancel, {args.naive:,}", f"{naive_rate:,.0f} commands/s")
    table.add_row("sweep / naive", f"{sweep_rate / naive_rate:.1f}x")
    table.add_row(f"create task, {small_n:,} pending (median)", f"{small * 1000:.2f} ms")
    table.add_row(f"create task, {large_n:,} pending (median)", f"{large * 1000:.2f} ms")
    table.add_row("creation ratio (big / small)", f"{large / small:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
