"""Flow control on a real Redis: two app instances (two gunicorn workers, or two machines) with
their own Services share each application's budget, and `devcmd apps set-limit`, run as a real
process, changes the limit of apps already serving."""

from __future__ import annotations

import json

import pytest

from app import create_app
from devcmd.domain import auth
from devcmd.services import Services
from tests import backends
from tests.integration.test_admin_cli import devcmd

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
LIMIT = 4


@pytest.fixture
def workers(svc):
    """Two Flask apps, each with its own Redis connections, as two worker processes have."""
    config = svc.config.with_(rate_limit_per_minute=LIMIT)
    services = [Services.from_config(config) for _ in range(2)]
    yield [create_app(services=s).test_client() for s in services]
    for s in services:
        s.close()


def headers_of(svc, app_id: str) -> dict[str, str]:
    auth.create_application(svc, app_id=app_id, secret="s")
    token = auth.login(svc, app_id, "s")["accessToken"]
    return {"app_key": app_id, "Authorization": f"Bearer {token}"}


def test_workers_share_one_budget_per_application(svc, workers):
    first, second = workers
    a, b = headers_of(svc, "app-a"), headers_of(svc, "app-b")
    left = []
    for i in range(LIMIT):
        reply = (first, second)[i % 2].get(CMDS, headers=a)
        assert reply.status_code == 200
        left.append(int(reply.headers["X-RateLimit-Remaining"]))
    assert left == [3, 2, 1, 0]
    for worker in workers:
        refused = worker.get(CMDS, headers=a)
        assert (refused.status_code, refused.json["error_code"]) == (403, "1010009")
        assert refused.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert int(refused.headers["Retry-After"]) > 0
    assert second.get(CMDS, headers=b).status_code == 200  # app-b has its own budget


def test_set_limit_from_the_cli_applies_to_running_workers(svc, workers, redis_url, broker_url):
    first, second = workers
    a = headers_of(svc, "app-a")
    for _ in range(LIMIT):
        first.get(CMDS, headers=a)
    assert second.get(CMDS, headers=a).status_code == 403

    done = devcmd(
        redis_url,
        "apps",
        "set-limit",
        "--app-id",
        "app-a",
        "--per-minute",
        "6",
        broker_url=broker_url,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"appId": "app-a", "perMinute": 6, "default": False}
    served = second.get(CMDS, headers=a)
    assert served.status_code == 200
    assert served.headers["X-RateLimit-Limit"] == "6"
    assert first.get(CMDS, headers=a).headers["X-RateLimit-Limit"] == "6"

    back = devcmd(
        redis_url, "apps", "set-limit", "--app-id", "app-a", "--default", broker_url=broker_url
    )
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["default"] is True
    assert first.get(CMDS, headers=a).status_code == 403


def test_set_limit_refuses_bad_input_without_a_traceback(svc, redis_url, broker_url):
    unknown = devcmd(
        redis_url,
        "apps",
        "set-limit",
        "--app-id",
        "nobody",
        "--per-minute",
        "5",
        broker_url=broker_url,
    )
    assert unknown.returncode == 1
    assert "does not exist" in unknown.stderr
    for args in (["--per-minute", "0"], [], ["--per-minute", "5", "--default"]):
        bad = devcmd(redis_url, "apps", "set-limit", "--app-id", "x", *args, broker_url=broker_url)
        assert bad.returncode == 2, bad.stderr
        assert "Traceback" not in bad.stderr
