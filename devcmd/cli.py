"""The `devcmd` command: `devcmd run` starts every process locally, `devcmd apps` manages apps.

With REDIS_URL unset, both talk to an embedded real redis-server kept in `$DEVCMD_HOME/redis`
on EMBEDDED_REDIS_PORT: reused when it already runs there, else started and stopped again.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import honcho.manager
import requests
from redis import RedisError
from rich.console import Console

from devcmd import client, demo, errors, simulate, watch
from devcmd.broker import QUEUE_CALLBACKS, QUEUE_REVOCATIONS
from devcmd.config import Config
from devcmd.domain import auth
from devcmd.domain import notifications as notifications_domain
from devcmd.embedded import RedisServer
from devcmd.services import Services

# honcho SIGKILLs the children still running this many seconds after its SIGTERM. Its default of
# 5 s is shorter than the worker's soft shutdown (worker_soft_shutdown_timeout=15 in
# devcmd.broker), and a SIGKILLed worker's unacked tasks only return after the visibility timeout.
KILL_WAIT = 20

GUNICORN_CONFIG = "python:devcmd.gunicorn_config"


@contextmanager
def redis_url(config: Config) -> Iterator[str]:
    """REDIS_URL if set; else the embedded server's URL, starting (and then stopping) it if needed.

    Raises click.ClickException if the embedded server cannot start.
    """
    if config.redis_url:
        yield config.redis_url
        return
    server = RedisServer(config.home / "redis", config.embedded_redis_port)
    if server.is_up():
        # Another `devcmd run` (or admin command) owns it; it also stops it.
        yield server.url
        return
    try:
        _start_shielded(server)
        yield server.url
    finally:
        server.stop()


def _start_shielded(server: RedisServer) -> None:
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
    honcho.manager.KILL_WAIT = KILL_WAIT
    env = {**os.environ, "REDIS_URL": config.redis_url or ""}
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
    for name, argv in process_commands(config).items():
        # honcho runs each command through a shell; exec leaves the app itself as the child.
        manager.add_process(name, "exec " + shlex.join(argv), env=env)
    return manager


def print_json(value: Any) -> None:
    """Write `value` as one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """devcmd: queue, deliver and revoke device commands.

    Settings come from the environment (REDIS_URL, PORT, DEVCMD_HOME, ...); see the README.
    """
    try:
        ctx.obj = Config.from_env()
    except (TypeError, ValueError) as exc:
        raise click.ClickException(f"invalid environment setting: {exc}") from exc


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
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
    with redis_url(config) as url, metrics_directory(config, home) as metrics_dir:
        manager = build_manager(config.with_(redis_url=url, home=home), metrics_dir)
        click.echo(
            f"devcmd: serving http://{config.host}:{config.port} (Redis {_safe(url)}); "
            "create an application with `devcmd apps create`"
        )
        manager.loop()
    ctx.exit(manager.returncode or 0)


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


def _safe(url: str) -> str:
    """`url` without its password, for printing."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


@main.group()
def apps() -> None:
    """Create, list, authorize and delete applications.

    An application is the appId and secret an API caller logs in with.
    """


@apps.command("create")
@click.option("--app-id", help="The appId (default: a random 32-hex-digit id).")
@click.option(
    "--secret", help="The secret (default: a random one; a flag ends up in shell history)."
)
@click.option("--name", help="A display name (default: the appId).")
@click.pass_obj
def create(config: Config, app_id: str | None, secret: str | None, name: str | None) -> None:
    """Create an application and print it as JSON.

    The JSON holds appId, secret and webhookSecret; the secret is stored only as a hash, so this
    is the one time it is shown.
    """
    with admin_services(config) as svc:
        print_json(auth.create_application(svc, app_id, secret, name))


@apps.command("list")
@click.pass_obj
def list_(config: Config) -> None:
    """Print every application as a JSON list.

    Each entry has appId, name and frozen; secrets are never listed.
    """
    with admin_services(config) as svc:
        print_json(auth.list_applications(svc))


@apps.command("authorize")
@click.option("--app", "owner", required=True, help="The application being acted for.")
@click.option("--grantee", required=True, help="The application allowed to act for it.")
@click.pass_obj
def authorize(config: Config, owner: str, grantee: str) -> None:
    """Let one application act for another.

    GRANTEE may then pass `appId=APP` on its requests to act for APP.
    """
    with admin_services(config) as svc:
        auth.authorize(svc, owner, grantee)
        print_json({"owner": owner, "grantee": grantee})


@apps.command("delete")
@click.option("--app-id", required=True, help="The application to delete.")
@click.option("--force", is_flag=True, help="Also delete its devices (cancelling their commands).")
@click.pass_obj
def delete(config: Config, app_id: str, force: bool) -> None:
    """Delete an application and print what went, as JSON.

    Its access and refresh tokens stop working at once and its grants (given and received)
    are removed; the appId cannot be reused. While it has devices this refuses unless --force:
    then each device is deleted as the API does it, its undelivered commands ending CANCELED
    (with callbacks) through the workers' revocation sweep.
    """
    with admin_services(config) as svc:
        print_json(auth.delete_application(svc, app_id, force))


@apps.command("rotate-webhook-secret")
@click.option("--app-id", required=True, help="The application whose webhookSecret changes.")
@click.option(
    "--grace-hours",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="How long the old secret keeps signing alongside the new one.",
)
@click.pass_obj
def rotate_webhook_secret(config: Config, app_id: str, grace_hours: float) -> None:
    """Give an application a new webhookSecret and print it as JSON.

    Until the grace period ends, every callback carries two signatures in `webhook-signature`
    (new and old secret), so receivers can switch over at their own pace.
    """
    with admin_services(config) as svc:
        print_json(auth.rotate_webhook_secret(svc, app_id, round(grace_hours * 3600)))


@apps.command("set-limit")
@click.option("--app-id", required=True, help="The application whose flow control changes.")
@click.option(
    "--per-minute",
    type=click.IntRange(min=1),
    help="Northbound calls per minute for this application.",
)
@click.option("--default", "use_default", is_flag=True, help="Back to RATE_LIMIT_PER_MINUTE.")
@click.pass_obj
def set_limit(config: Config, app_id: str, per_minute: int | None, use_default: bool) -> None:
    """Set how many northbound calls per minute an application may make.

    Counts every authenticated call made with the application's credentials, in both dialects,
    also when it acts for another application. Every web process applies it from the next call.
    Prints {"appId", "perMinute", "default"}.
    """
    if (per_minute is None) == (not use_default):
        raise click.UsageError("give exactly one of --per-minute N and --default")
    with admin_services(config) as svc:
        print_json(auth.set_rate_limit(svc, app_id, per_minute))


@main.group()
def notifications() -> None:
    """Inspect and re-send callback notifications."""


SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str | None, now: datetime.datetime | None = None) -> int:
    """`--since` as epoch milliseconds: a duration back from now (`90s`, `30m`, `6h`, `2d`) or
    an ISO 8601 time (`2026-11-23T08:00:00Z`; without a zone, UTC). None means the beginning."""
    if not value:
        return 0
    now = now or datetime.datetime.now(datetime.UTC)
    if value[:-1].isdigit() and value[-1] in SINCE_UNITS:
        moment = now - datetime.timedelta(seconds=int(value[:-1]) * SINCE_UNITS[value[-1]])
    else:
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError as exc:
            raise click.BadParameter(
                "expected a duration (30m, 6h, 2d) or an ISO 8601 time", param_hint="--since"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@notifications.command("retry")
@click.option("--failed", is_flag=True, required=True, help="Re-send notifications that failed.")
@click.option("--since", help="Only those that failed since: 30m, 6h, 2d or an ISO 8601 time.")
@click.pass_obj
def retry_notifications(config: Config, failed: bool, since: str | None) -> None:
    """Give failed notifications a fresh round of attempts, starting now.

    Their attempt history is kept; prints {"requeued": N}. The workers (and beat) must be
    running for them to go out.
    """
    since_ms = parse_since(since)
    with admin_services(config) as svc:
        print_json({"requeued": notifications_domain.retry_failed(svc, since_ms)})


def _base_url(config: Config, base_url: str | None) -> str:
    """The API's address: `--base-url`, else this machine's HOST and PORT."""
    return (base_url or f"http://{config.host}:{config.port}").rstrip("/")


@main.command("simulate")
@click.option("--devices", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--app-id", required=True, help="The application the devices belong to.")
@click.option("--secret", required=True, help="The application's secret (to register devices).")
@click.option("--base-url", help="The API's address (default: http://$HOST:$PORT).")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--ack-delay", type=click.FloatRange(min=0), default=0.1, show_default=True)
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True)
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option(
    "--commands-until-idle", "until_idle", is_flag=True, help="Stop once no device has work."
)
@click.option("--max", "batch", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--seed", default="", help="Makes which commands fail reproducible.")
@click.option("--node-prefix", default="sim-", show_default=True)
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def simulate_devices(config: Config, base_url: str | None, **options: Any) -> None:
    """Simulate devices taking commands through the device API, with a live display.

    Registers `--devices` devices (nodeIds sim-0001...; credentials kept in
    $DEVCMD_HOME/simulated-devices-<appId>.json and reused), then each polls every
    `--poll-interval` seconds for up to `--max` commands, acknowledges them after `--ack-delay`
    seconds and reports FAILED for a `--fail-rate` share of them, SUCCESSFUL for the rest.
    Stops on Ctrl-C, after `--duration` or, with `--commands-until-idle`, once every device
    found its queue empty (whichever comes first), finishing the commands it already took.
    Prints a JSON summary line; `--record FILE` also writes every command received.
    """
    settings = simulate.Settings(
        base_url=_base_url(config, base_url),
        home=config.home,
        **options,
    )
    try:
        summary = simulate.run(settings)
    except simulate.SimulationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary))


@main.group()
def tasks() -> None:
    """Follow revocation tasks."""


@tasks.command("watch")
@click.argument("task_id")
@click.option("--app-id", envvar="DEVCMD_APP_ID", required=True, help="[env DEVCMD_APP_ID]")
@click.option("--secret", envvar="DEVCMD_SECRET", required=True, help="[env DEVCMD_SECRET]")
@click.option("--base-url", help="The API's address (default: http://$HOST:$PORT).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after this many seconds.")
@click.pass_obj
def watch_task(
    config: Config,
    task_id: str,
    app_id: str,
    secret: str,
    base_url: str | None,
    interval: float,
    timeout: float | None,
) -> None:
    """Show a revocation task's progress live until it finishes, then print it as JSON.

    The bar shows the task's scope (totalCount), the commands cancelled so far and its status,
    polled over the API as the application. Exits 0 once the task is SUCCESS, PART_SUCCESS or
    FAILED, 1 if it is unknown or --timeout passes first.
    """
    api = client.Northbound(_base_url(config, base_url), app_id, secret)
    console = Console(stderr=True)
    try:
        api.login()
        task = watch.watch(lambda: api.task(task_id), console, interval, timeout)
    except watch.WatchTimeout as exc:
        raise click.ClickException(f"{exc} after {timeout} s") from exc
    except (client.ApiError, client.Unreachable) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        api.close()
    print_json(task)


@main.command("demo")
@click.option("--base-url", help="The API's address (default: http://$HOST:$PORT).")
@click.option("--app-id", help="Use this application (default: create a new one in Redis).")
@click.option("--secret", help="The --app-id application's secret.")
@click.option("--webhook-secret", help="Its webhookSecret, to verify callback signatures.")
@click.option("--commands", type=click.IntRange(3, 100_000), default=100, show_default=True)
@click.option(
    "--callback-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the demo's callback receiver listens on; the workers must reach it.",
)
@click.option("--callback-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True)
@click.pass_obj
def demo_(config: Config, base_url: str | None, app_id: str | None, **options: Any) -> None:
    """Walk through the product against a running stack (`devcmd run` in another terminal).

    Creates an application (through Redis, like `apps create`) unless --app-id is given,
    registers a device, queues --commands commands with callbacks to a receiver the demo runs,
    lets the device take two, cancels one singly, revokes the rest with a revocation task shown
    live, then waits for every command's final callback and checks their signatures. Each step
    is printed as it happens; the last line is a JSON summary. Callbacks to 127.0.0.1 need
    CALLBACK_ALLOW_PRIVATE=true on the workers (the default under `devcmd run`).
    """
    url = _base_url(config, base_url)
    try:
        requests.get(url + "/healthz", timeout=3).raise_for_status()
    except requests.RequestException as exc:
        raise click.ClickException(
            f"no devcmd answers at {url} ({exc.__class__.__name__}); start one with `devcmd run`"
        ) from exc
    if app_id and not options["secret"]:
        raise click.UsageError("--app-id needs --secret")
    if not app_id:
        with admin_services(config) as svc:
            created = auth.create_application(svc, name="devcmd demo")
        app_id = created["appId"]
        options.update(secret=created["secret"], webhook_secret=created["webhookSecret"])
    settings = demo.Settings(base_url=url, app_id=app_id, **options)
    try:
        summary = demo.run(settings, Console(stderr=True))
    except (client.ApiError, client.Unreachable, watch.WatchTimeout) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary))
