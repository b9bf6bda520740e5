"""`devcmd demo`: a guided walkthrough against a running stack, over the public API only.

It creates an application (or uses one given), registers a device, queues commands whose
callbacks go to a receiver it runs itself, lets the device take two of them, cancels one
singly, revokes the rest with a revocation task watched live, and then waits for every
command's final callback, checking each signature with the application's webhookSecret.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rich.console import Console
from rich.progress import track
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from devcmd.client import Northbound
from devcmd.watch import watch

TERMINAL = frozenset({"SUCCESSFUL", "FAILED", "TIMEOUT", "CANCELED", "EXPIRED"})


@dataclass(frozen=True)
class Settings:
    base_url: str
    app_id: str
    secret: str
    webhook_secret: str | None
    commands: int = 100
    callback_host: str = "127.0.0.1"
    callback_timeout: float = 30.0


@dataclass
class Callbacks:
    """What the demo's receiver got: every POST body, keyed checks on the signatures."""

    verifier: Webhook | None
    bodies: list[dict] = field(default_factory=list)
    webhook_ids: Counter[str] = field(default_factory=Counter)
    verified: int = 0
    forged: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, headers: dict[str, str], raw: bytes) -> None:
        with self.lock:
            self.webhook_ids[headers.get("webhook-id", "")] += 1
            if self.verifier is not None:
                try:
                    self.verifier.verify(raw, headers)
                    self.verified += 1
                except WebhookVerificationError:
                    self.forged += 1
            self.bodies.append(json.loads(raw))

    def final_codes(self) -> dict[str, str]:
        """commandId -> the terminal resultCode called back for it."""
        with self.lock:
            return {
                b["commandId"]: b["result"]["resultCode"]
                for b in self.bodies
                if b["result"]["resultCode"] in TERMINAL
            }

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.webhook_ids.values())


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            self.server.callbacks.record(headers, raw)
            status = 204
        except (ValueError, KeyError, TypeError):
            status = 400
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo reports what arrived itself."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    callbacks: Callbacks


@contextmanager
def receiver(host: str, callbacks: Callbacks) -> Iterator[str]:
    """A callback receiver on `host` (a free port) for the block; yields its URL."""
    server = _Server((host, 0), _Handler)
    server.callbacks = callbacks
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/devcmd-demo"
    finally:
        server.shutdown()
        server.server_close()


def run(settings: Settings, console: Console) -> dict:
    """The walkthrough; returns a summary of what happened (also printed step by step).

    Raises client.ApiError / client.Unreachable when the stack refuses or does not answer.
    """
    api = Northbound(settings.base_url, settings.app_id, settings.secret)
    verifier = Webhook(settings.webhook_secret) if settings.webhook_secret else None
    callbacks = Callbacks(verifier)
    step = _Steps(console)
    try:
        with receiver(settings.callback_host, callbacks) as callback_url:
            step(f"Receiver for callbacks listening at {callback_url}")
            api.login()
            step(f"Logged in as application [bold]{settings.app_id}[/]")
            device = api.register_device(f"demo-{secrets.token_hex(4)}")
            device_id, psk = device["deviceId"], device["psk"]
            step(f"Registered device {device_id}")
            ids = [
                api.create_command(device_id, "Light", "SET", {"level": i}, callback_url)[
                    "commandId"
                ]
                for i in track(range(settings.commands), "queueing", console=console)
            ]
            step(f"Queued {len(ids)} commands (PENDING), each with callbackUrl set")
            taken = api.device_fetch(device_id, psk, 2)
            for command, code in zip(taken, ("SUCCESSFUL", "FAILED"), strict=False):
                api.device_result(device_id, psk, command["commandId"], code)
            step(f"The device took {len(taken)} and reported SUCCESSFUL and FAILED")
            single = api.cancel_command(ids[-1])
            step(f"Cancelled {single['commandId']} on its own: {single['status']}")
            task = api.create_task(device_id)
            step(
                f"Revocation task {task['taskId']}: 201 {task['status']}, "
                f"scope {task['totalCount']} commands, revoked as of this answer"
            )
            final = watch(lambda: api.task(task["taskId"]), console, interval=0.2)
            done = f"{final['cancelledCount']}/{final['totalCount']}"
            step(f"Task {final['status']}: cancelled {done}")
            codes = _await_callbacks(callbacks, set(ids), settings.callback_timeout)
            step(_callbacks_line(callbacks, codes, len(ids)))
            attempts = api.notifications(ids[0])
            step(f"History of {ids[0]}: {len(attempts)} notifications, with their attempts")
    finally:
        api.close()
    return {
        "appId": settings.app_id,
        "deviceId": device_id,
        "commands": len(ids),
        "task": {k: final[k] for k in ("taskId", "status", "totalCount", "cancelledCount")},
        "finalCallbacks": dict(Counter(codes.values())),
        "callbacksReceived": len(callbacks.bodies),
        "signaturesVerified": callbacks.verified if verifier else None,
        "signaturesRejected": callbacks.forged if verifier else None,
        "duplicateDeliveries": callbacks.duplicates(),
    }


def _await_callbacks(callbacks: Callbacks, ids: set[str], timeout: float) -> dict[str, str]:
    """Wait until every command's terminal callback arrived (or `timeout`); the codes so far."""
    deadline = time.monotonic() + timeout
    while (codes := callbacks.final_codes()).keys() < ids and time.monotonic() < deadline:
        time.sleep(0.2)
    return {k: v for k, v in codes.items() if k in ids}


def _callbacks_line(callbacks: Callbacks, codes: dict[str, str], expected: int) -> str:
    tally = ", ".join(f"{n} {code}" for code, n in sorted(Counter(codes.values()).items()))
    line = f"Final callbacks for {len(codes)}/{expected} commands ({tally})"
    if callbacks.verifier is not None:
        line += f"; {callbacks.verified} signatures verified, {callbacks.forged} rejected"
    return line + f"; {len(callbacks.bodies)} POSTs in all"


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
