"""What the command groups share: the Redis an admin command talks to, JSON output and the
API's address.

With REDIS_URL unset, commands talk to an embedded real redis-server kept in `$DEVCMD_HOME/redis`
on EMBEDDED_REDIS_PORT: reused when it already runs there, else started and stopped again.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from redis import RedisError

from devcmd import errors, lifecycle
from devcmd.config import Config
from devcmd.embedded import RedisServer
from devcmd.embedded_cluster import EmbeddedCluster
from devcmd.services import Services

log = logging.getLogger(__name__)
RESTART_CHECK_SECONDS = 1.0


@contextmanager
def redis_url(config: Config, supervise: bool = False) -> Iterator[str]:
    """REDIS_URL if set; else the embedded server's URL, starting (and then stopping) it if needed.

    With `supervise` (devcmd run), a started server dies with this process, even a SIGKILLed
    one, and is started again, with a log line, whenever it dies meanwhile. Raises
    click.ClickException if the embedded server cannot start.
    """
    if config.redis_url:
        yield config.redis_url
        return
    guard = lifecycle.dies_with_this_process() if supervise else None
    server = RedisServer(config.home / "redis", config.embedded_redis_port, preexec_fn=guard)
    if server.is_up():
        # Another `devcmd run` (or admin command) owns it; it also stops it.
        yield server.url
        return
    stopping = threading.Event()
    try:
        start_shielded(server)
        if supervise:
            threading.Thread(
                target=_keep_up, args=(server, stopping), name="redis-supervisor", daemon=True
            ).start()
        yield server.url
    finally:
        stopping.set()
        server.stop()


def _keep_up(server: RedisServer, stopping: threading.Event) -> None:
    """Start `server` again whenever its process ends, until `stopping` is set. Its data
    survives in its AOF; clients reconnect by themselves (devcmd.services.redis_client)."""
    while not stopping.wait(RESTART_CHECK_SECONDS):
        process = server.process
        if process is None or process.poll() is None or stopping.is_set():
            continue
        click.echo(
            f"devcmd: the embedded Redis (port {server.port}) exited with {process.returncode}; "
            "starting it again",
            err=True,
        )
        try:
            start_shielded(server)
        except click.ClickException as exc:
            log.error("%s; trying again", exc.message)


def start_shielded(server: RedisServer | EmbeddedCluster) -> None:
    """Start `server` with SIGINT blocked, so a Ctrl-C in the terminal does not stop it.

    Ctrl-C signals the whole foreground process group, Redis included. Redis must outlive the
    worker, which still acks and requeues tasks while it shuts down, and be stopped last, by
    SIGTERM. A blocked signal stays blocked across fork and exec, and redis-server never unblocks
    SIGINT; a Ctrl-C meanwhile reaches this process once the mask is restored.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(f"could not start the embedded Redis: {exc}") from exc
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def admin_services(config: Config) -> Iterator[Services]:
    """Services for one admin command; domain and Redis errors become a message and exit 1."""
    try:
        with redis_url(config) as url:
            svc = Services.from_config(config.with_(redis_url=url))
            try:
                yield svc
            finally:
                svc.close()
    except errors.DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except RedisError as exc:
        # The message names host and port, never the URL, which may carry a password.
        raise click.ClickException(f"Redis: {exc}") from exc


def print_json(value: Any) -> None:
    """Write `value` as one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2))


def api_url(config: Config, given: str | None) -> str:
    """The API's address: `--base-url`, else this machine's HOST and PORT."""
    return (given or f"http://{config.host}:{config.port}").rstrip("/")


def safe_url(url: str) -> str:
    """`url` without its password, for printing."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
