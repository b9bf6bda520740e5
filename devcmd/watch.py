"""`devcmd tasks watch`: a revocation task's progress as a live bar, polled over the API."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from devcmd.client import TASK_DONE

STATUS_STYLE = {
    "WAITING": "yellow",
    "RUNNING": "cyan",
    "SUCCESS": "green",
    "PART_SUCCESS": "magenta",
    "FAILED": "red",
}


class WatchTimeout(Exception):
    """The task was not finished when the watch's time ran out; carries its last record."""

    def __init__(self, task: dict) -> None:
        super().__init__(f"task {task.get('taskId')} still {task.get('status')}")
        self.task = task


def watch(
    fetch: Callable[[], dict],
    console: Console,
    interval: float = 0.5,
    timeout: float | None = None,
) -> dict:
    """Poll `fetch()` (the task's record) every `interval` seconds, showing scope, cancelled so
    far and status, until the task is SUCCESS, PART_SUCCESS or FAILED; returns that record.

    Raises WatchTimeout after `timeout` seconds; errors of `fetch` pass through.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cancelled"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("sweep", total=None, status="")
        while True:
            task = fetch()
            status = task["status"]
            style = STATUS_STYLE.get(status, "white")
            progress.update(
                bar,
                total=task.get("totalCount") or 0,
                completed=task.get("cancelledCount") or 0,
                status=f"[{style}]{status:<12}[/]",
            )
            if status in TASK_DONE:
                return task
            if deadline is not None and time.monotonic() >= deadline:
                raise WatchTimeout(task)
            time.sleep(interval)
