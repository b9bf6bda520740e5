"""`devcmd apps rotate-webhook-secret` and `devcmd notifications retry` as real processes against
a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devcmd.domain import auth, delivery, notifications
from devcmd.embedded import free_port
from tests.integration.test_notifications import cancelled_with_callbacks, queued_refs, record

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def devcmd(
    redis_url: str, *args: str, broker_url: str | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url}
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    argv = [str(BIN / "devcmd"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_rotate_webhook_secret_keeps_the_old_one_signing_for_the_grace(svc, app_id, redis_url):
    old = svc.apps.get(app_id)["webhookSecret"]
    done = devcmd(redis_url, "apps", "rotate-webhook-secret", "--app-id", app_id)
    assert done.returncode == 0, done.stderr
    new = json.loads(done.stdout)
    assert new["appId"] == app_id
    assert new["webhookSecret"].startswith("whsec_")
    assert new["webhookSecret"] != old
    assert auth.webhook_secrets(svc.apps.get(app_id)) == [new["webhookSecret"], old]

    again = devcmd(
        redis_url, "apps", "rotate-webhook-secret", "--app-id", app_id, "--grace-hours", "0"
    )
    assert again.returncode == 0, again.stderr
    newest = json.loads(again.stdout)["webhookSecret"]
    assert auth.webhook_secrets(svc.apps.get(app_id)) == [newest]


def test_rotate_webhook_secret_of_an_unknown_app_is_a_clear_error(svc, redis_url):
    done = devcmd(redis_url, "apps", "rotate-webhook-secret", "--app-id", "nobody")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "does not exist" in done.stderr.lower() or "not found" in done.stderr.lower()
    assert done.stdout == ""


def test_notifications_retry_failed_requeues_what_failed_since(svc, app_id, device_id, redis_url):
    svc.config = svc.config.with_(callback_retry_schedule="0.01")
    sender = delivery.Sender(concurrency=2)
    try:
        dead = f"http://127.0.0.1:{free_port()}/cb"
        (command_id,) = cancelled_with_callbacks(svc, app_id, device_id, dead, 1)
        delivery.deliver(svc, sender, queued_refs(svc))
        time.sleep(0.05)
        notifications.retry_due(svc)
        assert delivery.deliver(svc, sender, queued_refs(svc)[-1:])["failed"] == 1
    finally:
        sender.close()
    assert record(svc, app_id, command_id)["state"] == "failed"

    later = devcmd(redis_url, "notifications", "retry", "--failed", "--since", "2099-01-01T00:00")
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout) == {"requeued": 0}
    assert record(svc, app_id, command_id)["state"] == "failed"

    done = devcmd(redis_url, "notifications", "retry", "--failed", "--since", "1h")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"requeued": 1}
    revived = record(svc, app_id, command_id)
    assert (revived["state"], revived["attemptCount"], len(revived["attempts"])) == (
        "pending",
        0,
        2,
    )


def test_notifications_retry_refuses_a_bad_since(redis_url):
    done = devcmd(redis_url, "notifications", "retry", "--failed", "--since", "yesterday")
    assert done.returncode == 2
    assert "--since" in done.stderr
    assert "Traceback" not in done.stderr
