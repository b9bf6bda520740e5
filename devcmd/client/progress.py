"""How `Client.wait_for_task` reports progress: a live rich bar, a callback, or nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devcmd.client.models import RevocationTask

STATUS_STYLE = {
    "WAITING": "yellow",
    "RUNNING": "cyan",
    "SUCCESS": "green",
    "PART_SUCCESS": "magenta",
    "FAILED": "red",
}

Report = Callable[["RevocationTask"], None]


def reporter(progress: bool | Report) -> tuple[Report, Callable[[], None]]:
    """(report a polled task, finish the display) for `wait_for_task`'s `progress` argument."""
    if callable(progress):
        return progress, lambda: None
    if progress:
        bar = Bar()
        return bar.update, bar.stop
    return lambda task: None, lambda: None


class Bar:
    """Status, a bar of cancelled over scope (totalCount) and elapsed time, on stderr.

    rich is imported here only, so clients that never show a bar do not load it.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.fields[status]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("cancelled"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.progress.start()
        self.bar = self.progress.add_task("sweep", total=None, status="")

    def update(self, task: RevocationTask) -> None:
        style = STATUS_STYLE.get(task.status, "white")
        self.progress.update(
            self.bar,
            total=task.total_count,
            completed=task.cancelled_count,
            status=f"[{style}]{task.status:<12}[/]",
        )

    def stop(self) -> None:
        self.progress.stop()
