"""devcmd.receiver against real signed deliveries: real Celery workers POST callbacks to the
kit's WSGI app and Flask blueprint on 127.0.0.1. Valid, duplicated, replayed, tampered and
forged deliveries, a failing handler, and a rotated webhookSecret."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import flask
import pytest
import requests

from devcmd.client import Client
from devcmd.receiver import Event, MemoryDedup, blueprint, serving, wsgi_app
from tests.e2e.conftest import Stack
from tests.e2e.processes import REPO, child_env

pytestmark = pytest.mark.e2e

DEVCMD = Path(sys.executable).parent / "devcmd"
TIMEOUT = 30.0  # seconds for callbacks to arrive
TOLERANCE = 3  # seconds a signed delivery stays acceptable (webhook-timestamp has whole seconds)


class Inbox:
    """A handler that keeps the events it is given; with `fail_first`, it raises on the first
    call for each webhook-id (the kit must answer 5xx, and devcmd retry)."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.fail_first = fail_first
        self.calls: Counter[str] = Counter()
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.calls[event.webhook_id] += 1
            if self.fail_first and self.calls[event.webhook_id] == 1:
                raise RuntimeError("the handler's database is down")
            self.events.append(event)

    def wait_for(self, count: int) -> list[Event]:
        deadline = time.monotonic() + TIMEOUT
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            return list(self.events)


class Tap:
    """WSGI middleware keeping each POST (body, headers) and the kit's answer: the deliveries
    as devcmd sent them, to replay."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.posts: list[tuple[bytes, dict[str, str], int]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        environ["wsgi.input"] = io.BytesIO(body)

        def start(status: str, response_headers: list, *rest: Any) -> Any:
            self.posts.append((body, headers, int(status.split()[0])))
            return start_response(status, response_headers, *rest)

        return self.app(environ, start)


def random_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def cancelled_with_callbacks(api: Client, urls: list[str]) -> dict[str, str]:
    """One command per URL on a fresh device, all revoked by a task: {commandId: url}."""
    device = api.register_device(f"rcv-{os.urandom(3).hex()}")
    created = {
        api.create_command(device.device_id, "Light", "SET", callback_url=u).command_id: u
        for u in urls
    }
    task = api.create_revocation_task(device.device_id)
    assert api.wait_for_task(task.task_id, timeout=TIMEOUT).status == "SUCCESS"
    return created


def attempt_statuses(api: Client, command_id: str, at_least: int) -> list[int | None]:
    """The receiver's answers to a command's CANCELED callback, once `at_least` attempts ran."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        canceled = [n for n in api.notifications(command_id) if n.status == "CANCELED"]
        attempts = canceled[0].attempts if canceled else []
        if len(attempts) >= at_least or time.monotonic() > deadline:
            return [a.http_status for a in attempts]
        time.sleep(0.1)


def test_signed_callbacks_are_handled_once_and_forgeries_replays_and_handler_errors_are_not(
    stack: Stack, application: dict[str, str]
) -> None:
    secret = application["webhookSecret"]
    good, flaky, forged = Inbox(), Inbox(fail_first=True), Inbox()
    tapped = Tap(wsgi_app(good, secrets=[secret], tolerance=TOLERANCE, dedup=MemoryDedup()))
    with (
        serving(tapped) as receiver,
        serving(wsgi_app(flaky, secrets=secret)) as flaky_receiver,
        serving(wsgi_app(forged, secrets=random_secret())) as stranger,
        Client(stack.base_url, application["appId"], application["secret"]) as api,
    ):
        urls = [receiver.url("/a"), receiver.url("/b"), flaky_receiver.url(), stranger.url()]
        created = cancelled_with_callbacks(api, urls)
        events = good.wait_for(2)
        while len(tapped.posts) < 2:  # the Tap notes a POST once its answer starts
            time.sleep(0.01)
        (body, headers, _), *_ = tapped.posts
        again = requests.post(receiver.url(), data=body, headers=headers, timeout=5)
        altered = body.replace(b"CANCELED", b"SUCCESSFUL")
        tampered = requests.post(receiver.url(), data=altered, headers=headers, timeout=5)
        flaky.wait_for(1)
        forged_id = next(iter(reversed(created)))
        refused = attempt_statuses(api, forged_id, at_least=1)
        # The same delivery once it was signed more than TOLERANCE seconds ago: a replay.
        time.sleep(max(0.0, int(headers["webhook-timestamp"]) + TOLERANCE + 1.5 - time.time()))
        replayed = requests.post(receiver.url(), data=body, headers=headers, timeout=5)
        (kept,) = [n for n in api.notifications(forged_id) if n.status == "CANCELED"]

    mine = {c for c, u in created.items() if u.startswith(receiver.url())}
    assert {e.command_id for e in events} == mine
    assert len(events) == 2
    for event in events:
        assert event.status == "CANCELED"
        assert event.webhook_id == f"msg_{event.command_id}_CANCELED"
        assert abs(event.timestamp.timestamp() - time.time()) < TIMEOUT + 5
        assert event.body == json.loads(event.raw)
    assert {e.device_id for e in events} == {events[0].device_id}
    assert [status for _, _, status in tapped.posts[:2]] == [200, 200]
    assert again.status_code == 200  # a duplicate: acknowledged, not handled again
    assert tampered.status_code == 400
    assert replayed.status_code == 400, (replayed.text, headers, time.time())
    assert len(good.events) == 2
    # The failing handler answered 500, devcmd retried the same webhook-id, the retry was handled.
    (flaky_id,) = flaky.calls
    assert flaky.calls[flaky_id] == 2
    assert [e.webhook_id for e in flaky.events] == [flaky_id]
    # A receiver with another secret refuses the delivery (400), never calling its handler, and
    # devcmd does not retry a forgery's refusal: one attempt, kept as failed (seconds later,
    # after the replay's wait, still one).
    assert refused == [400]
    assert forged.calls == Counter()
    assert ([a.http_status for a in kept.attempts], kept.state) == ([400], "failed")


def rotate(redis_url: str, home: Path, app_id: str, grace_hours: str) -> str:
    """`devcmd apps rotate-webhook-secret`: the new secret."""
    args = ["apps", "rotate-webhook-secret", "--app-id", app_id, "--grace-hours", grace_hours]
    env = child_env(redis_url, home)
    done = subprocess.run(
        [str(DEVCMD), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["webhookSecret"]


def flask_receiver(handler: Inbox, secrets: list[str]) -> flask.Flask:
    app = flask.Flask(__name__)
    app.register_blueprint(blueprint(handler, secrets, url_prefix="/hooks"))
    return app


def test_a_rotated_secret_is_accepted_by_old_and_new_receivers_until_its_grace_ends(
    stack: Stack, application: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    old = application["webhookSecret"]
    new = rotate(redis_url, tmp_path, application["appId"], "1")
    by_old, by_new, by_both, by_previous = Inbox(), Inbox(), Inbox(), Inbox()
    with (
        serving(flask_receiver(by_old, [old])) as old_receiver,
        serving(flask_receiver(by_new, [new])) as new_receiver,
        Client(stack.base_url, application["appId"], application["secret"]) as api,
    ):
        cancelled_with_callbacks(api, [old_receiver.url("/hooks"), new_receiver.url("/hooks")])
        during_grace = (len(by_old.wait_for(1)), len(by_new.wait_for(1)))

    newest = rotate(redis_url, tmp_path, application["appId"], "0")
    with (
        serving(flask_receiver(by_both, [newest, new])) as both_receiver,
        serving(flask_receiver(by_previous, [new])) as previous_receiver,
        Client(stack.base_url, application["appId"], application["secret"]) as api,
    ):
        urls = [both_receiver.url("/hooks"), previous_receiver.url("/hooks")]
        created = cancelled_with_callbacks(api, urls)
        after_grace = len(by_both.wait_for(1))
        (to_previous,) = [c for c, u in created.items() if u == urls[1]]
        refused = attempt_statuses(api, to_previous, at_least=1)

    assert during_grace == (1, 1)
    assert after_grace == 1
    assert refused[0] == 400
    assert by_previous.calls == Counter()
