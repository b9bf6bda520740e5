"""`devcmd migrate`: move the data store to this devcmd's key layout."""

from __future__ import annotations

import click
from redis import RedisError
from rich.console import Console
from rich.progress import Progress

from devcmd.cli.common import redis_url
from devcmd.config import Config
from devcmd.services import redis_client
from devcmd.store import layout, migration


@click.command("migrate")
@click.pass_obj
def migrate(config: Config) -> None:
    """Migrate the data store written by the previous devcmd to this version's key layout.

    Stop every devcmd process first; processes refuse to start until the migration is done. Safe
    to run again, and an interrupted run is finished by running it again. Every device is then
    put on the retention index (devices of a store written before retention are not on it).
    """
    console = Console(stderr=True)
    with redis_url(config) as url:
        redis = redis_client(url, config, decode_responses=True)
        try:
            registered: list[int] = []
            with Progress(console=console, transient=True) as progress:
                bar = progress.add_task("command documents", total=None)
                rewritten = migration.migrate(
                    redis,
                    config.index_buckets,
                    on_keys=lambda total: progress.update(bar, total=total),
                    on_key=lambda _: progress.advance(bar),
                    on_registered=registered.append,
                )
        except migration.CannotMigrate as exc:
            raise click.ClickException(str(exc)) from exc
        except RedisError as exc:
            raise click.ClickException(f"Redis: {exc}") from exc
        finally:
            redis.close()
    (devices,) = registered
    click.echo(
        f"key layout {layout.expected(config.index_buckets)}: "
        f"{rewritten:,} command documents rewritten, {devices:,} devices on the retention index"
    )
