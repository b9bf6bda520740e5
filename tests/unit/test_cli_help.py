"""`devcmd --help` works for every command and group, and each one explains itself."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from devcmd.cli import main


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The argv path of every command and group under `group` (itself included)."""
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


ALL = list(commands(main))


def test_the_tree_has_the_commands_the_readme_names() -> None:
    names = {" ".join(path) for path in ALL}
    assert {"run", "apps create", "tasks watch", "demo", "simulate"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "devcmd")
def test_help_describes_every_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], env={"REDIS_URL": "redis://127.0.0.1:1"})

    assert result.exit_code == 0, result.output
    usage, _, description = result.output.partition("\n\n")
    assert usage.startswith("Usage: ")
    # A first line of prose, not just the option list.
    assert description.strip()
    assert not description.lstrip().startswith("Options:")
