"""Benchmark: the concurrency race of `tests/integration/test_concurrency.py` at a large size.

Run from the repository root: `.venv/bin/python -m bench.concurrency` (200,000 commands by
default; `--commands` to change it). It starts its own redis-server (AOF on, as in production)
in a temporary directory, queues half the commands, then races creators, fetchers, a canceller,
a revoker, a sweeper and a timer process on one device while the other half is queued, checks
every guarantee the test checks, and prints the rates and the outcome.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from devcmd.domain import auth, devices, revocations
from devcmd.embedded import temporary_server
from devcmd.services import Services
from tests.integration.test_concurrency import Outcome, Race, check, race_config, run_race

console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--creators", type=int, default=2)
    parser.add_argument("--fetchers", type=int, default=2)
    parser.add_argument("--cancellers", type=int, default=1)
    parser.add_argument("--revokers", type=int, default=1)
    parser.add_argument("--sweepers", type=int, default=1)
    args = parser.parse_args()
    with temporary_server() as server:
        run(server.url, args)


def run(url: str, args: argparse.Namespace) -> None:
    svc = Services.from_config(race_config(url))
    app_id = auth.create_application(svc, app_id="bench", secret="bench-secret")["appId"]
    device_id = devices.register(svc, app_id, "node-race", None, None)["deviceId"]
    roles = ("creators", "fetchers", "cancellers", "revokers", "sweepers")
    race = Race(
        svc.config, app_id, device_id, args.commands, **{r: getattr(args, r) for r in roles}
    )
    with console.status(f"racing over {args.commands:,} commands"):
        started = time.perf_counter()
        outcome = run_race(race)
        total = time.perf_counter() - started
    with console.status("checking every command and task"):
        started = time.perf_counter()
        ended = check(svc, race, outcome)
        checked = time.perf_counter() - started
    tasks = Counter(revocations.get(svc, app_id, t["taskId"])["status"] for t in outcome.tasks)
    console.print(report(race, outcome, ended, tasks, total, checked))
    svc.close()


def report(race: Race, outcome: Outcome, ended: Counter, tasks: Counter, total, checked) -> Table:
    upfront, racing = race.commands // 2, race.commands - race.commands // 2
    seeding = total - outcome.seconds
    swept = ended["CANCELED"] - len(outcome.cancelled)
    table = Table(title="devcmd concurrency race (all guarantees held)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("processes racing", processes(race)),
        (f"queued before the race ({upfront:,})", f"{upfront / seeding:,.0f} commands/s"),
        (f"queued during the race ({racing:,})", f"{racing / outcome.seconds:,.0f} commands/s"),
        ("race duration", f"{outcome.seconds:.1f} s"),
        ("handed out (incl. retransmissions)", rate(len(outcome.fetched), outcome.seconds)),
        ("results accepted", rate(len(outcome.finished), outcome.seconds)),
        ("cancelled singly", rate(len(outcome.cancelled), outcome.seconds)),
        ("cancelled by sweeps", rate(swept, outcome.seconds)),
        ("refused (already moved on)", f"{outcome.refused:,}"),
        ("tasks", ", ".join(f"{n} {status}" for status, n in tasks.most_common())),
        ("commands by final status", ", ".join(f"{n:,} {s}" for s, n in ended.most_common())),
        ("checking everything", f"{checked:.1f} s"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def processes(race: Race) -> str:
    roles = ("creators", "fetchers", "cancellers", "revokers", "sweepers")
    return ", ".join(f"{getattr(race, role)} {role}" for role in roles) + ", 1 timer"


def rate(count: int, seconds: float) -> str:
    return f"{count:,} ({count / seconds:,.0f}/s)"


if __name__ == "__main__":
    main()
