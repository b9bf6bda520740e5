"""`devcmd apps`: create, list, authorize, delete applications and set their limits."""

from __future__ import annotations

import click

from devcmd.cli.common import admin_services, print_json
from devcmd.config import Config
from devcmd.domain import auth


@click.group()
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
