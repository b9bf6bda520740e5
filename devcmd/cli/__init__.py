"""The `devcmd` command: a short group that loads one module per command group.

`devcmd run` starts every process locally (run.py); `apps`, `notifications`, `tasks`,
`simulate`, `demo` and `migrate` each live in a module of their own; common.py holds what they
share.
"""

from __future__ import annotations

import click

from devcmd.cli import apps, demo, migrate, notifications, run, simulate, tasks
from devcmd.config import Config


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


main.add_command(run.run)
main.add_command(apps.apps)
main.add_command(notifications.notifications)
main.add_command(tasks.tasks)
main.add_command(simulate.simulate_devices)
main.add_command(demo.demo_)
main.add_command(migrate.migrate)
