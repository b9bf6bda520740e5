"""CPU per request of each hot call in one process, this checkout beside another, alternating.

Run from the repository root: `.venv/bin/python -m bench.cpu [--baseline DIR] [--turns 3]`.
Each call of `bench.http` (and a poll of a revocation task by `taskId`) goes straight to the
WSGI app of one process, as `bench.profile` sends it (same app and hooks, JSON access log and
multiprocess metrics on, no gunicorn, no sockets to the client, no profiler), on its own Redis.
For each call: the process's CPU per request and the Redis server's (`INFO cpu`), the least of
three runs of `--calls` requests. Steadier than wrk's requests/s on a shared machine, and it
measures what a change to the application does, without gunicorn's share.

With `--baseline DIR` (another checkout, e.g. a `git worktree` of an older commit) each turn
measures both, in alternating order, so a drift of the machine's speed falls on both alike: the
other checkout's `app`, `devcmd` and `workers` with this checkout's `bench` (linked side by side
in a temporary directory), each in a process of its own.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(calls: int) -> dict[str, tuple[float, float]]:
    """Per call name: (this process's CPU us per request, the Redis server's), least of 3."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="devcmd-cpu-"))
    import orjson

    from app import create_app
    from bench.http import BARE, Endpoint, endpoints, prepare
    from bench.profile import call, environ
    from devcmd import logs
    from devcmd.config import Config
    from devcmd.embedded import temporary_server
    from devcmd.services import Services

    figures = {}
    with temporary_server() as server:
        config = Config.from_env().with_(redis_url=server.url, revocation_queue_limit=10**7)
        svc = Services.from_config(config)
        fixture = prepare(svc)
        logs.configure("json", "INFO")
        logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115
        app = create_app(services=svc)
        measured = [BARE, *endpoints(fixture)]
        env, body = environ(next(e for e in measured if e.name == "open revocation task"), fixture)
        answer = app({**env, "wsgi.input": io.BytesIO(body)}, lambda *_: None)
        task_id = orjson.loads(b"".join(answer))["taskId"]
        base = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
        measured.append(Endpoint("poll task by taskId", "GET", f"{base}?taskId={task_id}"))

        def redis_cpu() -> float:
            info = svc.redis.info("cpu")
            return info["used_cpu_user"] + info["used_cpu_sys"]

        for endpoint in measured:
            env, body = environ(endpoint, fixture)
            for _ in range(100):  # warm up: caches, connections
                status = call(app, env, body)
            if not status.startswith("2"):
                raise RuntimeError(f"{endpoint.name}: {status}")
            runs = []
            for _ in range(3):
                cpu, server_cpu = time.process_time(), redis_cpu()
                for _ in range(calls):
                    call(app, env, body)
                runs.append(
                    (
                        (time.process_time() - cpu) / calls * 1e6,
                        (redis_cpu() - server_cpu) / calls * 1e6,
                    )
                )
            figures[endpoint.name] = min(runs)
        svc.close()
    return figures


def run_in(directory: Path, calls: int) -> dict[str, tuple[float, float]]:
    """`measure` in a process of its own whose `app` and `devcmd` come from `directory`."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.cpu", "--measure-only", "--calls", str(calls)],
        cwd=directory,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"bench.cpu in {directory} failed:\n{done.stderr[-3000:]}")
    return {name: tuple(v) for name, v in json.loads(done.stdout.splitlines()[-1]).items()}


def linked(checkout: Path, into: Path) -> Path:
    """A directory with `checkout`'s app, devcmd and workers and this checkout's bench."""
    for name in ("app", "devcmd", "workers"):
        (into / name).symlink_to(checkout / name)
    (into / "bench").symlink_to(REPO / "bench")
    return into


def span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:,.0f}" if round(low) == round(high) else f"{low:,.0f}-{high:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="requests per run")
    parser.add_argument("--turns", type=int, default=3, help="measurements of each checkout")
    parser.add_argument("--baseline", type=Path, help="another checkout, measured alternately")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.calls)))
        return
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="devcmd-cpu-") as scratch:
        dirs = {"new": REPO}
        if args.baseline:
            dirs["old"] = linked(args.baseline.resolve(), Path(scratch))
        results: dict[str, list[dict]] = {name: [] for name in dirs}
        for turn in range(args.turns):
            order = list(dirs) if turn % 2 == 0 else list(reversed(dirs))
            for name in order:
                results[name].append(run_in(dirs[name], args.calls))
                print(f"  turn {turn + 1}: {name} measured", flush=True)
    table = Table(
        title="CPU per request in one process (us; range over turns, each the least of 3 runs)"
    )
    for column in ["call", "app CPU", "Redis CPU"] + (
        ["old app CPU", "old Redis CPU"] if args.baseline else []
    ):
        table.add_column(column, justify="left" if column == "call" else "right")
    for name in results["new"][0]:
        row = [name]
        for which in dirs:
            row += [
                span([r[name][0] for r in results[which]]),
                span([r[name][1] for r in results[which]]),
            ]
        table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
