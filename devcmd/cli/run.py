"""`devcmd run`: web, the two workers and beat under honcho, with interleaved logs."""

from __future__ import annotations

import functools
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import honcho.manager
import honcho.process

from devcmd import connections, lifecycle
from devcmd.cli.common import redis_url, safe_url, start_shielded
from devcmd.config import Config
from devcmd.embedded import RedisServer, free_port
from devcmd.embedded_cluster import EmbeddedCluster
from devcmd.jobs import QUEUE_CALLBACKS, QUEUE_REVOCATIONS

# honcho SIGKILLs the children still running this many seconds after WORKER_STOP_TIMEOUT (when a
# worker ends by itself after SIGTERM, see workers.lifecycle). honcho's default of 5 s is shorter
# than the worker's soft shutdown (worker_soft_shutdown_timeout=15 in devcmd.broker), and a
# SIGKILLed worker's unacked tasks only return after the visibility timeout.
KILL_MARGIN = 5

GUNICORN_CONFIG = "python:devcmd.gunicorn_config"


def process_commands(config: Config) -> dict[str, list[str]]:
    """The argv of web, the two workers and beat, run with this interpreter so no venv must be
    active. Sweeps and callback deliveries have a worker each: a slow receiver never holds up a
    sweep, and each can be scaled on its own."""
    python = sys.executable
    celery = [python, "-m", "celery", "-A", "workers"]
    bind = f"{config.host}:{config.port}"
    schedule = str(config.home / "celerybeat-schedule")
    return {
        "web": [
            python,
            "-m",
            "gunicorn",
            "-c",
            GUNICORN_CONFIG,
            "app:create_app()",
            "--bind",
            bind,
        ],
        "worker": [
            *celery,
            "worker",
            "--loglevel",
            "INFO",
            "--queues",
            QUEUE_REVOCATIONS,
            "--concurrency",
            "2",
            "--hostname",
            "revocations@%h",
        ],
        "callbacks": [
            *celery,
            "worker",
            "--loglevel",
            "INFO",
            "--queues",
            QUEUE_CALLBACKS,
            "--concurrency",
            "2",
            "--hostname",
            "callbacks@%h",
        ],
        "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", schedule],
    }


def build_manager(config: Config, metrics_dir: Path | None = None) -> honcho.manager.Manager:
    """A honcho Manager running every process with REDIS_URL (and PROMETHEUS_MULTIPROC_DIR,
    when given) exported to it."""
    honcho.manager.KILL_WAIT = config.worker_stop_timeout + KILL_MARGIN
    env = {**os.environ, "REDIS_URL": config.redis_url or ""}
    if config.celery_broker_url:
        env["CELERY_BROKER_URL"] = config.celery_broker_url
    if metrics_dir:
        # One directory for web and workers: the web's /metrics also counts the workers' work.
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Interleaved output in a terminal reads better as text; LOG_FORMAT=json to see production's.
    env.setdefault("LOG_FORMAT", "text")
    # A local stack's receivers live on this machine: private and loopback callbackUrls are
    # allowed unless the caller says otherwise (production keeps the default, false).
    env.setdefault("CALLBACK_ALLOW_PRIVATE", "true")
    # Children write to a pipe; unbuffered, their lines reach the merged log as they happen.
    env.setdefault("PYTHONUNBUFFERED", "1")
    manager = honcho.manager.Manager()
    manager._process_ctor = DiesWithRun  # honcho has no public hook for how children start
    for name, argv in process_commands(config).items():
        # honcho runs each command through a shell; exec leaves the app itself as the child.
        manager.add_process(name, "exec " + shlex.join(argv), env=env)
    return manager


@click.command()
@click.option(
    "--redis-cluster",
    "masters",
    type=click.IntRange(min=1),
    help="Start a local Redis Cluster of this many masters (and a separate broker Redis) "
    "instead of one embedded Redis: a try-out of the cluster set-up; its data is removed "
    "when devcmd run ends.",
)
@click.pass_context
def run(ctx: click.Context, masters: int | None) -> None:
    """Run web, the two workers and beat with interleaved logs until Ctrl-C.

    Callbacks to private and loopback addresses are allowed (CALLBACK_ALLOW_PRIVATE=true) unless
    the environment sets it.

    Without REDIS_URL an embedded Redis keeps its data in $DEVCMD_HOME/redis. If any process
    exits, the others are stopped too, and the embedded Redis last.

    Logs are text unless LOG_FORMAT=json. Every process writes its metrics to one fresh
    directory (PROMETHEUS_MULTIPROC_DIR, removed at the end unless the environment names one),
    so http://$HOST:$PORT/metrics counts web and workers together.
    """
    config: Config = ctx.obj
    home = config.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if masters and config.redis_url:
        raise click.UsageError("--redis-cluster starts its own cluster: unset REDIS_URL")
    try:
        connections.check(config)
    except connections.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stores = local_cluster(home, masters) if masters else redis_url(config, supervise=True)
    with stores as urls, metrics_directory(config, home) as metrics_dir:
        url, broker = (urls, config.celery_broker_url) if isinstance(urls, str) else urls
        settings = config.with_(redis_url=url, celery_broker_url=broker, home=home)
        manager = build_manager(settings, metrics_dir)
        click.echo(
            f"devcmd: serving http://{config.host}:{config.port} (Redis {safe_url(url)}); "
            "create an application with `devcmd apps create`"
        )
        manager.loop()
    ctx.exit(manager.returncode or 0)


class DiesWithRun(honcho.process.Process):
    """honcho's runner of one process (a forked Python process that starts the app through a
    shell `exec` in a session of its own, out of reach of a signal to devcmd run's group), made
    to die with its parent: even a SIGKILLed `devcmd run` leaves no process behind. The runner
    gets SIGKILL (it only relays output), the app SIGTERM, so it still stops in order (a worker
    within WORKER_STOP_TIMEOUT)."""

    def run(self, events=None, ignore_signals=False) -> None:
        lifecycle.die_with_parent(signal.SIGKILL, multiprocessing.parent_process().pid)
        self._child_ctor = functools.partial(
            honcho.process.Popen, preexec_fn=lifecycle.dies_with_this_process()
        )
        super().run(events, ignore_signals)


@contextmanager
def local_cluster(home: Path, masters: int) -> Iterator[tuple[str, str]]:
    """A fresh local Redis Cluster of `masters` masters and a broker Redis beside it (Celery
    cannot use a cluster), under `home`; yields (REDIS_URL, CELERY_BROKER_URL) and removes
    both when the block ends."""
    directory = Path(tempfile.mkdtemp(prefix="cluster-", dir=home))
    cluster = EmbeddedCluster(directory / "cluster", masters)
    broker = RedisServer(directory / "broker", free_port())
    try:
        for server in (broker, cluster):
            start_shielded(server)  # Ctrl-C must not stop them before the workers
        click.echo(
            f"devcmd: local Redis Cluster of {masters} masters at {cluster.url}, "
            f"broker at {broker.url}"
        )
        yield cluster.url, broker.url
    finally:
        cluster.stop()
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def metrics_directory(config: Config, home: Path) -> Iterator[Path | None]:
    """A fresh, empty PROMETHEUS_MULTIPROC_DIR under `home` for one run, removed afterwards;
    None when the environment names one already (it is then used as it is)."""
    if config.prometheus_multiproc_dir:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="metrics-", dir=home))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
