"""`devcmd demo` and `devcmd tasks watch` as real processes against a real stack (gunicorn,
Celery worker and beat, Redis), checked against what the API and Redis say afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from devcmd.store import keys
from tests.e2e.conftest import Stack
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.processes import REPO, child_env

pytestmark = pytest.mark.e2e

DEVCMD = Path(sys.executable).parent / "devcmd"
DEMO_COMMANDS = 60


def devcmd(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DEVCMD), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_demo_walks_through_a_revocation_and_checks_every_callback(
    stack: Stack, redis_url: str, tmp_path: Path
) -> None:
    env = child_env(redis_url, tmp_path / "home")
    done = devcmd(env, "demo", "--base-url", stack.base_url, "--commands", str(DEMO_COMMANDS))

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    # Two taken by the device, one cancelled singly: the task's scope is the rest.
    scope = DEMO_COMMANDS - 3
    assert summary["task"]["status"] == "SUCCESS"
    assert summary["task"]["totalCount"] == summary["task"]["cancelledCount"] == scope
    assert summary["finalCallbacks"] == {"CANCELED": scope + 1, "SUCCESSFUL": 1, "FAILED": 1}
    assert summary["signaturesVerified"] == summary["callbacksReceived"] >= DEMO_COMMANDS
    assert summary["signaturesRejected"] == 0
    # The steps were narrated, and what the demo reports is what the service holds.
    assert "Revocation task" in done.stderr
    assert f"{scope}/{scope}" in done.stderr
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.hget(keys.app(summary["appId"]), "appId") == summary["appId"]
    client.close()


def test_watch_follows_a_task_to_its_end_and_prints_the_record(
    stack: Stack, oceanconnect: OceanConnect, application: dict[str, str], tmp_path: Path
) -> None:
    assert oceanconnect.login().status_code == 200
    device_id = oceanconnect.register_device("watch-1").json()["deviceId"]
    for i in range(5):
        assert oceanconnect.create_command(device_id, "SET", {"i": i}).status_code == 201
    task_id = oceanconnect.create_cancel_task(device_id).json()["taskId"]
    env = child_env("redis://127.0.0.1:1/0", tmp_path / "home")  # an API client: no Redis
    env.update(DEVCMD_APP_ID=application["appId"], DEVCMD_SECRET=application["secret"])

    done = devcmd(env, "tasks", "watch", task_id, "--base-url", stack.base_url, "--timeout", "60")

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == oceanconnect.query_cancel_task(task_id).json()["data"][0]
    assert printed["status"] == "SUCCESS"
    assert printed["cancelledCount"] == 5
    assert "5/5" in done.stderr


def test_watch_of_another_applications_task_fails_cleanly(
    stack: Stack, oceanconnect: OceanConnect, application: dict[str, str], tmp_path: Path
) -> None:
    env = child_env("redis://127.0.0.1:1/0", tmp_path / "home")
    env.update(DEVCMD_APP_ID=application["appId"], DEVCMD_SECRET=application["secret"])

    done = devcmd(env, "tasks", "watch", "0" * 32, "--base-url", stack.base_url)

    assert done.returncode == 1
    assert "no task" in done.stderr
    assert "Traceback" not in done.stderr
