"""`devcmd simulate`: devices taking commands through the device API, with a live display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from devcmd import simulate
from devcmd.cli.common import api_url
from devcmd.config import Config


@click.command("simulate")
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
        base_url=api_url(config, base_url),
        home=config.home,
        **options,
    )
    try:
        summary = simulate.run(settings)
    except simulate.SimulationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary))
