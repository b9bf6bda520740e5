"""`devcmd tasks watch`: a revocation task's progress, live."""

from __future__ import annotations

import click
from rich.console import Console

from devcmd.cli.common import api_url, print_json
from devcmd.client import Client, DevcmdError, TaskTimeout
from devcmd.client.progress import Bar
from devcmd.config import Config


@click.group()
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
    bar = Bar(Console(stderr=True))
    try:
        with Client(api_url(config, base_url), app_id, secret) as api:
            task = api.wait_for_task(
                task_id, timeout, bar.update, interval=interval, max_interval=interval
            )
    except TaskTimeout as exc:
        raise click.ClickException(
            f"task {task_id} still {exc.task.status} after {timeout} s"
        ) from exc
    except DevcmdError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bar.stop()
    print_json(task.raw)
