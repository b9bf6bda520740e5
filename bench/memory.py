"""Benchmark: bytes of server memory a pending command costs.

Run: `.venv/bin/python -m bench.memory` (or `make bench-memory`). It starts its own server (the
embedded Valkey, or `--binary PATH` for another, e.g. `/usr/bin/redis-server`) in a temporary
directory, creates commands through the domain layer (`devcmd.domain.commands.create`, with a
callbackUrl and a small paras, as an application would) and reports the growth of the server's
`used_memory` (read after MEMORY PURGE) divided by the number of commands, for two shapes:

1. spread: `--commands` commands over `--devices` devices (many short per-device indexes);
2. deep: `--deep` commands on one device (one long index).

`--breakdown` also says where the bytes go: MEMORY USAGE of every key, summed by kind of key
(`dc:{}:documents`, ...) per command (keys that existed before the commands are subtracted).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from contextlib import suppress

from redis import Redis, ResponseError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from devcmd.config import Config
from devcmd.domain import auth, commands, devices
from devcmd.embedded import temporary_server
from devcmd.services import Services

console = Console()
COMMAND = {"serviceId": "Light", "method": "SET", "paras": {"level": 1}}
OPTIONS = {"callbackUrl": "http://127.0.0.1:9/cb"}


def used_memory(redis: Redis) -> int:
    """`used_memory` after returning the allocator's free pages (jemalloc; a no-op elsewhere)."""
    # A server built without jemalloc may refuse it; its figure is still comparable.
    with suppress(ResponseError):
        redis.memory_purge()
    return int(redis.info("memory")["used_memory"])


def by_kind(redis: Redis) -> Counter:
    """MEMORY USAGE summed by kind of key: hash tags and bucket numbers left out."""
    usage: Counter = Counter()
    for key in redis.scan_iter(count=1000):
        kind = re.sub(r":\d+$", ":<n>", re.sub(r"\{[^}]*\}", "{}", key))
        usage[kind] += redis.memory_usage(key, samples=0) or 0
    return usage


def bytes_per_command(
    svc: Services, label: str, count: int, device_count: int, breakdown: bool = False
) -> tuple[float, dict[str, float]]:
    """Memory growth per command for `count` commands spread round-robin over `device_count`
    new devices (registered before the first reading, so only the commands are counted), and
    with `breakdown` the growth per kind of key."""
    auth.create_application(svc, app_id="bench", secret="bench-secret")
    device_ids = [
        devices.register(svc, "bench", f"node-{i}", None, None)["deviceId"]
        for i in range(device_count)
    ]
    kinds_before = by_kind(svc.redis) if breakdown else Counter()
    before = used_memory(svc.redis)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"{label}: {count:,} commands", total=count)
        for i in range(count):
            commands.create(svc, "bench", device_ids[i % device_count], COMMAND, OPTIONS)
            if i % 1000 == 999:
                progress.advance(bar, 1000)
    growth = (used_memory(svc.redis) - before) / count
    kinds = by_kind(svc.redis) if breakdown else Counter()
    return growth, {kind: (kinds[kind] - kinds_before[kind]) / count for kind in kinds}


def measure(
    binary: str | None, label: str, count: int, device_count: int, breakdown: bool = False
) -> tuple[str, float, dict[str, float]]:
    """(server description, bytes per command, per kind of key) of one shape on a fresh
    server: no memory left over from another shape (Valkey frees a FLUSHALL lazily)."""
    with temporary_server(binary=binary) as server:
        config = Config().with_(
            redis_url=server.url, max_pending_per_device=count, callback_allow_private=True
        )
        svc = Services.from_config(config)
        try:
            growth, kinds = bytes_per_command(svc, label, count, device_count, breakdown)
            return describe(svc.redis), growth, kinds
        finally:
            svc.close()


def describe(redis: Redis) -> str:
    """`Valkey 9.1.2 (libc)` or `Redis 7.0.15 (jemalloc-5.3.0)`."""
    info = redis.info("server")
    valkey = info.get("valkey_version")
    name = f"Valkey {valkey}" if valkey else f"Redis {info['redis_version']}"
    return f"{name} ({redis.info('memory')['mem_allocator']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000, help="commands, spread")
    parser.add_argument("--devices", type=int, default=1_000, help="devices they spread over")
    parser.add_argument("--deep", type=int, default=100_000, help="commands on one device")
    parser.add_argument("--binary", help="server binary (default: the embedded Valkey)")
    parser.add_argument("--breakdown", action="store_true", help="also bytes per kind of key")
    args = parser.parse_args()
    server, spread, spread_kinds = measure(
        args.binary, "spread", args.commands, args.devices, args.breakdown
    )
    _, deep, deep_kinds = measure(args.binary, "deep", args.deep, 1, args.breakdown)
    table = Table(title=f"memory per pending command on {server}")
    table.add_column("shape")
    table.add_column("bytes per command", justify="right")
    table.add_row(f"{args.commands:,} commands over {args.devices:,} devices", f"{spread:,.0f}")
    table.add_row(f"{args.deep:,} commands on one device", f"{deep:,.0f}")
    console.print(table)
    if args.breakdown:
        print_breakdown(spread_kinds, deep_kinds)


def print_breakdown(spread: dict[str, float], deep: dict[str, float]) -> None:
    """MEMORY USAGE growth per command by kind of key, largest first (under 0.5 B left out)."""
    table = Table(title="MEMORY USAGE per command, by kind of key")
    table.add_column("key")
    table.add_column("spread", justify="right")
    table.add_column("deep", justify="right")
    kinds = sorted(set(spread) | set(deep), key=lambda k: -max(spread.get(k, 0), deep.get(k, 0)))
    for kind in kinds:
        if max(spread.get(kind, 0), deep.get(kind, 0)) >= 0.5:
            table.add_row(kind, f"{spread.get(kind, 0):,.0f}", f"{deep.get(kind, 0):,.0f}")
    table.add_row("sum", f"{sum(spread.values()):,.0f}", f"{sum(deep.values()):,.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
