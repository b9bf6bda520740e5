"""`devcmd demo`: a guided walkthrough against a running stack, over the public API only.

It creates an application (or uses one given), registers a device, queues commands whose
callbacks go to a receiver it runs itself, lets the device take two of them, cancels one
singly, revokes the rest with a revocation task watched live, and then waits for every
command's final callback, checking each signature with the application's webhookSecret.
It uses only the public kit: `devcmd.client` to call, `devcmd.receiver` to receive.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import track

from devcmd.client import COMMAND_DONE, Client, DeviceClient, RevocationTask
from devcmd.client.progress import Bar
from devcmd.receiver import Event, MemoryDedup, WSGIApp, serving, wsgi_app


@dataclass(frozen=True)
class Settings:
    base_url: str
    app_id: str
    secret: str
    webhook_secret: str
    commands: int = 100
    callback_host: str = "127.0.0.1"
    callback_timeout: float = 30.0


class _CountingDedup(MemoryDedup):
    """The receiver kit's in-memory deduplication, counting the duplicates it drops."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def claim(self, webhook_id: str) -> bool:
        fresh = super().claim(webhook_id)
        self.dropped += not fresh
        return fresh


@dataclass
class Callbacks:
    """What the demo's receiver (devcmd.receiver) got: every verified event, answers by status."""

    events: list[Event] = field(default_factory=list)
    answers: Counter[int] = field(default_factory=Counter)
    dedup: _CountingDedup = field(default_factory=_CountingDedup)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def counting(self, app: WSGIApp) -> WSGIApp:
        """`app`, counting its answers by HTTP status (400: a signature refused)."""

        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            def start(status: str, headers: list, *rest: Any) -> Any:
                with self.lock:
                    self.answers[int(status.split()[0])] += 1
                return start_response(status, headers, *rest)

            return app(environ, start)

        return counted

    def final_codes(self) -> dict[str, str]:
        """commandId -> the terminal status called back for it."""
        with self.lock:
            return {e.command_id: e.status for e in self.events if e.status in COMMAND_DONE}

    def received(self) -> int:
        with self.lock:
            return sum(self.answers.values())

    def rejected(self) -> int:
        with self.lock:
            return self.answers[400]


@contextmanager
def receiver(host: str, webhook_secret: str, callbacks: Callbacks) -> Iterator[str]:
    """devcmd's receiver kit on `host` (a free port) for the block; yields its URL."""
    app = wsgi_app(callbacks.handle, secrets=[webhook_secret], dedup=callbacks.dedup)
    with serving(callbacks.counting(app), host) as server:
        yield server.url("/devcmd-demo")


def run(settings: Settings, console: Console) -> dict:
    """The walkthrough; returns a summary of what happened (also printed step by step).

    Raises devcmd.client.DevcmdError when the stack refuses or does not answer.
    """
    api = Client(settings.base_url, settings.app_id, settings.secret)
    callbacks = Callbacks()
    step = _Steps(console)
    with api, receiver(settings.callback_host, settings.webhook_secret, callbacks) as url:
        step(f"Receiver for callbacks (devcmd.receiver) listening at {url}")
        api.login()
        step(f"Logged in as application [bold]{settings.app_id}[/]")
        registered = api.register_device(f"demo-{secrets.token_hex(4)}")
        device_id = registered.device_id
        step(f"Registered device {device_id}")
        ids = [
            api.create_command(device_id, "Light", "SET", {"level": i}, callback_url=url).command_id
            for i in track(range(settings.commands), "queueing", console=console)
        ]
        step(f"Queued {len(ids)} commands (PENDING), each with callbackUrl set")
        with DeviceClient(settings.base_url, device_id, registered.psk) as device:
            taken = device.fetch(2)
            for command, code in zip(taken, ("SUCCESSFUL", "FAILED"), strict=False):
                device.ack(command.command_id)
                device.result(command.command_id, code, {"by": "devcmd demo"})
        step(f"The device took {len(taken)} and reported SUCCESSFUL and FAILED")
        single = api.cancel_command(ids[-1])
        step(f"Cancelled {single.command_id} on its own: {single.status}")
        task = api.create_revocation_task(device_id)
        step(
            f"Revocation task {task.task_id}: 201 {task.status}, "
            f"scope {task.total_count} commands, revoked as of this answer"
        )
        final = _watch(api, task, console)
        step(f"Task {final.status}: cancelled {final.cancelled_count}/{final.total_count}")
        codes = _await_callbacks(callbacks, set(ids), settings.callback_timeout)
        step(_callbacks_line(callbacks, codes, len(ids)))
        attempts = api.notifications(ids[0])
        step(f"History of {ids[0]}: {len(attempts)} notifications, with their attempts")
    return {
        "appId": settings.app_id,
        "deviceId": device_id,
        "commands": len(ids),
        "task": {k: final.raw[k] for k in ("taskId", "status", "totalCount", "cancelledCount")},
        "finalCallbacks": dict(Counter(codes.values())),
        "callbacksReceived": callbacks.received(),
        "signaturesVerified": callbacks.received() - callbacks.rejected(),
        "signaturesRejected": callbacks.rejected(),
        "duplicateDeliveries": callbacks.dedup.dropped,
    }


def _watch(api: Client, task: RevocationTask, console: Console) -> RevocationTask:
    bar = Bar(console)
    try:
        return api.wait_for_task(task.task_id, progress=bar.update, max_interval=0.2)
    finally:
        bar.stop()


def _await_callbacks(callbacks: Callbacks, ids: set[str], timeout: float) -> dict[str, str]:
    """Wait until every command's terminal callback arrived (or `timeout`); the codes so far."""
    deadline = time.monotonic() + timeout
    while (codes := callbacks.final_codes()).keys() < ids and time.monotonic() < deadline:
        time.sleep(0.2)
    return {k: v for k, v in codes.items() if k in ids}


def _callbacks_line(callbacks: Callbacks, codes: dict[str, str], expected: int) -> str:
    tally = ", ".join(f"{n} {code}" for code, n in sorted(Counter(codes.values()).items()))
    received, rejected = callbacks.received(), callbacks.rejected()
    return (
        f"Final callbacks for {len(codes)}/{expected} commands ({tally}); "
        f"{received - rejected} signatures verified, {rejected} rejected, "
        f"{callbacks.dedup.dropped} duplicates dropped; {received} POSTs in all"
    )


class _Steps:
    """Numbered, timed lines: `3. Registered device ... (12 ms)`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.number = 0
        self.since = time.monotonic()

    def __call__(self, text: str) -> None:
        self.number += 1
        elapsed = (time.monotonic() - self.since) * 1000
        self.console.print(f"[bold]{self.number:>2}.[/] {text} [dim]({elapsed:.0f} ms)[/]")
        self.since = time.monotonic()
