"""`devcmd notifications`: re-send callback notifications that failed."""

from __future__ import annotations

import datetime

import click

from devcmd.cli.common import admin_services, print_json
from devcmd.config import Config
from devcmd.domain import notifications as notifications_domain


@click.group()
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
