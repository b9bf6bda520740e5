"""Benchmark: what the create and sweep paths cost on a Redis Cluster of 1 master vs 3 masters,
and how keys and memory balance across the masters.

Run: `.venv/bin/python -m bench.scale` (or `make bench-scale`). For each cluster size it starts
its own embedded cluster and a broker Redis in a temporary directory, registers DEVICES devices
of one application, creates COMMANDS commands spread over them (the domain path the API runs),
then opens a revocation task per device and sweeps it as the worker does.

This machine has 2 cores, so wall-clock speed-ups are capped; what shows how the store scales is
the server-side cost: Redis CPU time (`INFO commandstats`, usec) per created and per revoked
command, summed over the masters and per master, and how keys and memory are spread.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from devcmd.config import Config
from devcmd.domain import auth, commands, devices, revocations
from devcmd.embedded import RedisServer, free_port
from devcmd.embedded_cluster import EmbeddedCluster
from devcmd.services import Services

console = Console()
COMMAND = {"serviceId": "Light", "method": "SET", "paras": {"level": 1}}
OPTIONS = {"callbackUrl": "http://127.0.0.1:9/cb"}


def cpu_usec(port: int) -> float:
    """Total CPU time (usec) the server at `port` has spent in commands so far."""
    with redis.Redis(port=port) as client:
        return sum(stat["usec"] for stat in client.info("commandstats").values())


def reset_stats(ports: list[int]) -> None:
    for port in ports:
        with redis.Redis(port=port) as client:
            client.config_resetstat()


def balance(ports: list[int]) -> list[tuple[int, int, int]]:
    """(port, keys, used memory bytes) of each master."""
    rows = []
    for port in ports:
        with redis.Redis(port=port) as client:
            rows.append((port, client.dbsize(), client.info("memory")["used_memory"]))
    return rows


def measure(masters: int, device_count: int, command_count: int) -> dict:
    """Create and sweep on a fresh cluster of `masters` masters; per-operation server cost."""
    with tempfile.TemporaryDirectory() as tmp:
        cluster = EmbeddedCluster(Path(tmp) / "cluster", masters).start()
        broker = RedisServer(Path(tmp) / "broker", free_port()).start()
        try:
            ports = [m.port for m in cluster.masters]
            config = Config().with_(
                redis_url=cluster.url, celery_broker_url=broker.url, callback_allow_private=True
            )
            svc = Services.from_config(config)
            app_id = auth.create_application(svc, app_id="bench", secret="bench")["appId"]
            ids = [
                devices.register(svc, app_id, f"n{i}", None, None)["deviceId"]
                for i in range(device_count)
            ]
            reset_stats(ports)
            for i in range(command_count):
                commands.create(svc, app_id, ids[i % device_count], COMMAND, OPTIONS)
            created = {port: cpu_usec(port) for port in ports}
            spread = balance(ports)
            reset_stats(ports)
            revoked = 0
            for device_id in ids:
                task = revocations.open_task(svc, app_id, device_id)
                while not revocations.sweep(svc, app_id, device_id, task["taskId"]).done:
                    pass
                revoked += int(revocations.get(svc, app_id, task["taskId"])["cancelledCount"])
            swept = {port: cpu_usec(port) for port in ports}
            svc.close()
        finally:
            cluster.stop()
            broker.stop()
    if revoked != command_count:
        raise SystemExit(f"swept {revoked} of {command_count} commands")
    return {"created": created, "swept": swept, "balance": spread, "commands": command_count}


def report(results: dict[int, dict]) -> None:
    table = Table(title="Redis CPU per command (INFO commandstats), summed and per master")
    for column in ("masters", "create usec/cmd", "per master", "sweep usec/cmd", "per master"):
        table.add_column(column)
    for masters, r in results.items():
        n = r["commands"]
        table.add_row(
            str(masters),
            f"{sum(r['created'].values()) / n:.1f}",
            " / ".join(f"{v / n:.1f}" for v in r["created"].values()),
            f"{sum(r['swept'].values()) / n:.1f}",
            " / ".join(f"{v / n:.1f}" for v in r["swept"].values()),
        )
    console.print(table)
    spread = Table(title="Keys and memory per master after creation")
    for column in ("masters", "keys per master", "used memory MB per master"):
        spread.add_column(column)
    for masters, r in results.items():
        spread.add_row(
            str(masters),
            " / ".join(str(keys) for _, keys, _ in r["balance"]),
            " / ".join(f"{mem / 1e6:.1f}" for _, _, mem in r["balance"]),
        )
    console.print(spread)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--commands", type=int, default=20_000)
    args = parser.parse_args()
    results = {m: measure(m, args.devices, args.commands) for m in (1, 3)}
    report(results)


if __name__ == "__main__":
    main()
