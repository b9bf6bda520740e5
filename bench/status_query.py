"""Benchmark: what a `status` filter on GET .../deviceCommands costs when other statuses pile up.

Run: `.venv/bin/python -m bench.status_query`. It starts its own redis-server in a temporary
directory (`devcmd.embedded.temporary_server`), so it needs nothing running. Figures are
compared as ratios measured in this one run.

Two applications with the same devices each hold 100 PENDING commands (spread over the
devices); one also holds 100,000 finished (CANCELED by revocation sweeps) commands, the other
100. The median latency of `GET .../deviceCommands?status=PENDING&pageSize=100` through the
Flask app is measured on both, with and without deviceId: with a status index it should not
grow with the finished commands (ratio near 1). The sweeps leave their index moves as status
debt, paid once by the first query after them: that query's time is shown apart.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app import create_app
from devcmd.config import Config
from devcmd.domain import auth, commands, devices, revocations
from devcmd.embedded import temporary_server
from devcmd.services import Services

console = Console()
COMMAND = {"serviceId": "Light", "method": "SET", "paras": {"level": 1}}
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"


def queue(svc: Services, app_id: str, device_ids: list[str], count: int, label: str) -> None:
    """Create `count` commands spread evenly over the devices, with a progress bar."""
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"queueing {count:,} commands ({label})", total=count)
        for i in range(count):
            commands.create(svc, app_id, device_ids[i % len(device_ids)], COMMAND, {})
            if i % 1000 == 999:
                progress.advance(bar, 1000)


def finish_all(svc: Services, app_id: str, device_ids: list[str]) -> None:
    """End every PENDING command of the devices CANCELED, with one swept task per device."""
    for device_id in device_ids:
        task = revocations.open_task(svc, app_id, device_id)
        while not revocations.sweep(svc, app_id, device_id, task["taskId"]).done:
            pass


def seed(svc: Services, app_id: str, secret: str, args, finished: int) -> tuple[list, dict]:
    """The application's devices, `finished` CANCELED commands, then `args.pending` PENDING
    ones; returns the device ids and the headers of a fresh token."""
    auth.create_application(svc, app_id=app_id, secret=secret)
    device_ids = [
        devices.register(svc, app_id, f"node-{i}", None, None)["deviceId"]
        for i in range(args.devices)
    ]
    queue(svc, app_id, device_ids, finished, f"{app_id}, to finish")
    finish_all(svc, app_id, device_ids)
    queue(svc, app_id, device_ids, args.pending, f"{app_id}, pending")
    token = auth.login(svc, app_id, secret)["accessToken"]
    return device_ids, {"app_key": app_id, "Authorization": f"Bearer {token}"}


def timed(client, headers: dict, params: dict) -> tuple[float, int]:
    """Seconds of one filtered query, and the totalSize it answered."""
    started = time.perf_counter()
    reply = client.get(CMDS, query_string=params, headers=headers)
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200, reply.json
    return elapsed, reply.json["pagination"]["totalSize"]


def compare(client, apps: dict[str, tuple], args) -> dict[str, dict[str, tuple]]:
    """Median latency and totalSize of each scope's query on each application. The two
    applications are queried in turn, so load from elsewhere on the machine hits both alike."""
    samples: dict = {}
    for run in range(args.runs + 5):  # the first 5 warm up
        for app_id, (device_ids, headers) in apps.items():
            app_wide = {"status": "PENDING", "pageSize": args.pending}
            scopes = {"application": app_wide, "one device": app_wide | {"deviceId": device_ids[0]}}
            for scope, params in scopes.items():
                elapsed, total = timed(client, headers, params)
                if run >= 5:
                    samples.setdefault(scope, {}).setdefault(app_id, []).append((elapsed, total))
    return {
        scope: {
            app_id: (statistics.median(e for e, _ in got), got[-1][1])
            for app_id, got in by_app.items()
        }
        for scope, by_app in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=100_000, help="in the big application")
    parser.add_argument("--small", type=int, default=100, help="finished in the small one")
    parser.add_argument("--pending", type=int, default=100)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--runs", type=int, default=51, help="queries per measure")
    args = parser.parse_args()
    with temporary_server() as server:
        run(server.url, args)


def run(url: str, args: argparse.Namespace) -> None:
    config = Config().with_(
        redis_url=url, max_pending_per_device=args.finished, rate_limit_per_minute=1_000_000
    )
    svc = Services.from_config(config)
    client = create_app(services=svc).test_client()
    apps = {
        "small": seed(svc, "small", "small-secret", args, args.small),
        "big": seed(svc, "big", "big-secret", args, args.finished),
    }
    # The sweeps that finished the big application's commands left their index moves as
    # status debt: the first query pays it, once (shown apart, not in the medians).
    first, _ = timed(client, apps["big"][1], {"status": "PENDING", "pageSize": args.pending})
    measured = compare(client, apps, args)
    table = Table(title="devcmd status filter benchmark (status=PENDING)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for scope, by_app in measured.items():
        (fast, n_small), (slow, n_big) = by_app["small"], by_app["big"]
        if n_small != n_big:
            raise RuntimeError(f"{scope}: totalSize {n_small} vs {n_big}")
        label = f"{scope}, {n_big} PENDING among"
        table.add_row(f"{label} {args.small:,} finished (median)", f"{fast * 1000:.2f} ms")
        table.add_row(f"{label} {args.finished:,} finished (median)", f"{slow * 1000:.2f} ms")
        table.add_row(f"{scope}: ratio (big / small)", f"{slow / fast:.2f}")
    table.add_row(
        f"first query after sweeping {args.finished:,} (pays their debt)", f"{first * 1000:.0f} ms"
    )
    console.print(table)
    svc.close()


if __name__ == "__main__":
    main()
