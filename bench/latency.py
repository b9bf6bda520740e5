"""Benchmark: end-to-end latency of a revocation, as a client sees it.

Run from the repository root: `.venv/bin/python -m bench.latency` (or `make bench`). It starts
its own redis-server, the web process and the revocations worker exactly as `devcmd run` does
(`devcmd.cli.run.process_commands`), queues 1,000 PENDING commands on each of 50 devices, then
for each device in turn POSTs `.../deviceCommandCancelTasks` and polls
`GET .../deviceCommandCancelTasks?taskId=` until the task reads `SUCCESS` (the client's view:
201 answered, sweep run by the worker, final status readable). Prints p50 and p99 over the runs
(with 50 runs the p99 is the slowest one).

First it revokes 10 small devices untimed: the first requests of each web thread and the first
task of each worker pool process set up their connections (and a pool process its Services),
a one-off per process that would otherwise be most of the p99. Beside the end-to-end figure it
prints when the 201 came and when the worker wrote SUCCESS (the task's `finishTime`, stamped by
the worker as its last batch starts, on the same machine's clock): the gap between that and
SUCCESS seen is what the polling itself adds.
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
from dataclasses import dataclass
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
WARMUP_PENDING = 10


@dataclass(frozen=True)
class Run:
    """One revocation as the client saw it, in seconds from sending the POST."""

    answered: float  # the 201 received
    written: float  # the worker's SUCCESS (the task's finishTime)
    seen: float  # SUCCESS read by the client
    polls: int


def seed(svc: Services, runs: int, pending: int) -> list[str]:
    """`runs` devices with `pending` PENDING commands each."""
    auth.create_application(svc, app_id=APP, secret=SECRET)
    auth.set_rate_limit(svc, APP, 100_000_000)
    ids = []
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"queueing {runs} x {pending:,} commands", total=runs * pending)
        for number in range(runs):
            ids.append(seed_device(svc, f"latency-{number}", pending))
            progress.advance(bar, pending)
    return ids


def seed_device(svc: Services, name: str, pending: int) -> str:
    """A new device with `pending` PENDING commands; returns its id."""
    device_id = devices.register(svc, APP, name, None, None)["deviceId"]
    for _ in range(pending):
        commands.create(svc, APP, device_id, COMMAND, {})
    return device_id


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


def revoke_and_wait(
    svc: Services, session: requests.Session, base: str, device_id: str, pending: int
) -> Run:
    """POST a task for the device, then poll until it reads SUCCESS (`svc` reads the task's
    finishTime in milliseconds: the API answers it in seconds)."""
    started, wall = time.perf_counter(), time.time()
    created = session.post(f"{base}{TASKS}", json={"deviceId": device_id}, timeout=10)
    answered = time.perf_counter() - started
    if created.status_code != 201 or created.json()["totalCount"] != pending:
        raise RuntimeError(f"unexpected answer: {created.status_code} {created.text[:300]}")
    task_id = created.json()["taskId"]
    polls = 0
    while True:
        polls += 1
        status = session.get(f"{base}{TASKS}", params={"taskId": task_id}, timeout=10).json()
        if status["data"] and status["data"][0]["status"] == "SUCCESS":
            seen = time.perf_counter() - started
            task = svc.revocations.get(APP, device_id, task_id) or {}
            return Run(answered, int(task["finishTime"]) / 1000 - wall, seen, polls)
        time.sleep(POLL_SECONDS)


def measure(runs: int, pending: int, warmup: int, app_dir: Path, workdir: Path) -> list[Run]:
    """One run per device, after `warmup` untimed ones."""
    with temporary_server() as server:
        svc = Services.from_config(Config().with_(redis_url=server.url))
        try:
            device_ids = seed(svc, runs, pending)
            warm_ids = [seed_device(svc, f"warm-{n}", WARMUP_PENDING) for n in range(warmup)]
            token = auth.login(svc, APP, SECRET)["accessToken"]
            session = requests.Session()
            session.headers.update({"app_key": APP, "Authorization": f"Bearer {token}"})
            with (
                web(server.url, app_dir, workdir / "web.log") as (base, _),
                worker(server.url, app_dir, workdir / "worker.log"),
            ):
                wait_ready(session, base)
                for device_id in warm_ids:
                    revoke_and_wait(svc, session, base, device_id, WARMUP_PENDING)
                return [revoke_and_wait(svc, session, base, d, pending) for d in device_ids]
        finally:
            svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=10, help="untimed revocations first")
    parser.add_argument("--app-dir", type=Path, default=REPO, help="the checkout to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="devcmd-bench-latency-") as tmp:
        runs = measure(args.runs, args.pending, args.warmup, args.app_dir.resolve(), Path(tmp))
    title = f"revocation end to end, {args.pending:,} pending, {args.runs} runs"
    table = Table(title=f"{title} (after {args.warmup} untimed)")
    for column in ("from sending the POST to", "p50", "p99"):
        table.add_column(column, justify="left" if column.startswith("from") else "right")
    for label, field in (
        ("201 received", "answered"),
        ("SUCCESS written by the worker", "written"),
        ("SUCCESS visible (polling client)", "seen"),
    ):
        table.add_row(label, *(f"{v * 1000:.1f} ms" for v in p50_p99(runs, field)))
    console.print(table)
    polls = sorted(run.polls for run in runs)
    console.print(f"polls until SUCCESS: median {statistics.median(polls):g}, most {polls[-1]}")


def p50_p99(runs: list[Run], field: str) -> tuple[float, float]:
    """The median and the 99th percentile (nearest rank) of one field over the runs."""
    values = sorted(getattr(run, field) for run in runs)
    return statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]


if __name__ == "__main__":
    main()
