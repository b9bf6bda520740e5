"""`devcmd demo`: a guided walkthrough against a running stack."""

from __future__ import annotations

import json
from typing import Any

import click
import requests
from rich.console import Console

from devcmd import demo
from devcmd.cli.common import admin_services, api_url
from devcmd.client import DevcmdError
from devcmd.config import Config
from devcmd.domain import auth


@click.command("demo")
@click.option("--base-url", help="The API's address (default: http://$HOST:$PORT).")
@click.option("--app-id", help="Use this application (default: create a new one in Redis).")
@click.option("--secret", help="The --app-id application's secret.")
@click.option("--webhook-secret", help="The --app-id application's webhookSecret.")
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
    url = api_url(config, base_url)
    try:
        requests.get(url + "/healthz", timeout=3).raise_for_status()
    except requests.RequestException as exc:
        raise click.ClickException(
            f"no devcmd answers at {url} ({exc.__class__.__name__}); start one with `devcmd run`"
        ) from exc
    if app_id and not (options["secret"] and options["webhook_secret"]):
        raise click.UsageError("--app-id needs --secret and --webhook-secret")
    if not app_id:
        with admin_services(config) as svc:
            created = auth.create_application(svc, name="devcmd demo")
        app_id = created["appId"]
        options.update(secret=created["secret"], webhook_secret=created["webhookSecret"])
    settings = demo.Settings(base_url=url, app_id=app_id, **options)
    try:
        summary = demo.run(settings, Console(stderr=True))
    except DevcmdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary))
