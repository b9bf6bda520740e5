"""Benchmark: end-to-end latency of a revocation, as a client sees it.

Run from the repository root: `.venv/bin/python -m bench.latency` (or `make bench`). It starts
its own redis-server, the web process and the revocations worker exactly as `devcmd run` does
(`devcmd.cli.run.process_commands`), queues 1,000 PENDING commands on each of 50 devices, then
for each device in turn POSTs `.../deviceCommandCancelTasks` and polls
`GET .../deviceCommandCancelTasks?taskId=` until the task reads `SUCCESS` (the client's view:
201 answered, sweep run by the worker, final status readable). Prints p50 and p99 over the runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.http import APP, COMMAND, REPO, SECRET, stop_group, web
from devcmd.cli.run import process_commands
from devcmd.config import Config
from devcmd.domain import auth, commands, devices
from devcmd.embedded import temporary_server
from devcmd.services import Services

console = Console()
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
POLL_SECONDS = 0.002


def seed(svc: Services, runs: int, pending: int) -> list[str]:
    """`runs` devices with `pending` PENDING commands each."""
    auth.create_application(svc, app_id=APP, secret=SECRET)
    auth.set_rate_limit(svc, APP, 100_000_000)
    ids = []
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"queueing {runs} x {pending:,} commands", total=runs * pending)
        for number in range(runs):
            device_id = devices.register(svc, APP, f"latency-{number}", None, None)["deviceId"]
            for _ in range(pending):
                commands.create(svc, APP, device_id, COMMAND, {})
            progress.advance(bar, pending)
            ids.append(device_id)
    return ids


@contextmanager
def worker(redis_url: str, app_dir: Path, log_path: Path) -> Iterator[None]:
    """The revocations worker as `devcmd run` starts it, run from `app_dir`."""
    env = {**os.environ, "REDIS_URL": redis_url, "LOG_FORMAT": "json"}
    argv = process_commands(Config().with_(redis_url=redis_url))["worker"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            stop_group(process, 30)


def wait_ready(session: requests.Session, base: str, timeout: float = 60.0) -> None:
    """Until /readyz says a worker is alive."""
    deadline = time.monotonic() + timeout
    while session.get(f"{base}/readyz", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not come up")
        time.sleep(0.2)


def revoke_and_wait(session: requests.Session, base: str, device_id: str, pending: int) -> float:
    """Seconds from sending the POST to reading SUCCESS."""
    started = time.perf_counter()
    created = session.post(f"{base}{TASKS}", json={"deviceId": device_id}, timeout=10)
    if created.status_code != 201 or created.json()["totalCount"] != pending:
        raise RuntimeError(f"unexpected answer: {created.status_code} {created.text[:300]}")
    task_id = created.json()["taskId"]
    while True:
        status = session.get(f"{base}{TASKS}", params={"taskId": task_id}, timeout=10).json()
        if status["data"] and status["data"][0]["status"] == "SUCCESS":
            return time.perf_counter() - started
        time.sleep(POLL_SECONDS)


def measure(runs: int, pending: int, app_dir: Path, workdir: Path) -> list[float]:
    """Seconds from POST to SUCCESS visible, one sample per device, sorted."""
    with temporary_server() as server:
        svc = Services.from_config(Config().with_(redis_url=server.url))
        try:
            device_ids = seed(svc, runs, pending)
            token = auth.login(svc, APP, SECRET)["accessToken"]
        finally:
            svc.close()
        session = requests.Session()
        session.headers.update({"app_key": APP, "Authorization": f"Bearer {token}"})
        with (
            web(server.url, app_dir, workdir / "web.log") as (base, _),
            worker(server.url, app_dir, workdir / "worker.log"),
        ):
            wait_ready(session, base)
            return sorted(revoke_and_wait(session, base, d, pending) for d in device_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--app-dir", type=Path, default=REPO, help="the checkout to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="devcmd-bench-latency-") as tmp:
        samples = measure(args.runs, args.pending, args.app_dir.resolve(), Path(tmp))
    table = Table(title=f"revocation end to end, {args.pending:,} pending, {args.runs} runs")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("POST to SUCCESS visible, p50", f"{statistics.median(samples) * 1000:.1f} ms")
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    table.add_row("POST to SUCCESS visible, p99", f"{p99 * 1000:.1f} ms")
    console.print(table)


if __name__ == "__main__":
    main()
