"""Flow control (app/flow.py) on fakeredis: the per-application northbound limit, its headers and
envelopes in both dialects, who a delegated call counts against, what is not limited, and the
failed-login limit. tests/integration/test_flow_control.py covers several processes and the CLI."""

from __future__ import annotations

import pytest

from app import create_app
from devcmd import errors
from devcmd.config import Config
from devcmd.domain import auth, commands
from tests.unit.conftest import login_headers

REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
DEVICE = "/iocm/app/dm/v1.4.0/devices/"
CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
ENOS = "/connect-service/v2.1/commands"
LOGIN = "/iocm/app/sec/v1.1.0/login"
LIMIT = 3


@pytest.fixture
def client(svc):
    """The app with a limit small enough to reach."""
    svc.config = svc.config.with_(rate_limit_per_minute=LIMIT, login_failures_per_minute=2)
    return create_app(services=svc).test_client()


def query(client, headers, app_id: str | None = None):
    suffix = f"?appId={app_id}" if app_id else ""
    return client.get(CMDS + suffix, headers=headers)


def assert_throttled(reply) -> None:
    assert reply.status_code == 403
    assert reply.json["error_code"] == "1010009"
    assert "3 per 1 minute" in reply.json["error_desc"]
    assert 0 < int(reply.headers["Retry-After"]) <= 60
    assert reply.headers["X-RateLimit-Limit"] == "3"
    assert reply.headers["X-RateLimit-Remaining"] == "0"


def test_an_application_gets_its_limit_then_403_1010009_with_headers(client, headers):
    remaining = []
    for _ in range(LIMIT):
        reply = query(client, headers)
        assert reply.status_code == 200
        assert reply.headers["X-RateLimit-Limit"] == str(LIMIT)
        assert int(reply.headers["X-RateLimit-Reset"]) > 0
        assert "Retry-After" not in reply.headers  # only a refusal says when to come back
        remaining.append(int(reply.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    assert_throttled(query(client, headers))


def test_a_refused_call_does_nothing(client, svc, headers, device_id):
    for _ in range(LIMIT - 1):  # registering the device was the first call
        query(client, headers)
    body = {"deviceId": device_id, "command": {"serviceId": "s", "method": "m", "paras": {}}}
    assert_throttled(client.post(CMDS, json=body, headers=headers))
    assert commands.query(svc, "app-a", None, 0, 2**62, 0, 1)[0] == 0  # totalSize


def test_every_northbound_route_and_both_dialects_share_one_budget(client, headers, device_id):
    assert client.get(DEVICE + device_id, headers=headers).status_code == 200
    enos = client.get(
        f"{ENOS}?action=get&orgId=app-a&assetId={device_id}&commandId=x", headers=headers
    )
    assert enos.json["code"] == 11404  # the third call: still served
    throttled = client.post(
        f"{ENOS}?action=cancel&orgId=app-a&assetId={device_id}", headers=headers
    )
    assert throttled.status_code == 200  # EnOS answers every outcome with HTTP 200
    assert throttled.json["code"] == 99429
    assert throttled.json["data"] is None
    assert "3 per 1 minute" in throttled.json["submsg"]
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert int(throttled.headers["Retry-After"]) > 0
    assert_throttled(client.delete(DEVICE + device_id, headers=headers))


def test_one_application_exhausted_leaves_another_alone(client, svc, headers):
    other = login_headers(client, svc, "app-b")
    for _ in range(LIMIT):
        query(client, headers)
    assert_throttled(query(client, headers))
    assert query(client, other).status_code == 200


def test_a_delegated_call_counts_against_the_caller_not_the_owner(client, svc, headers):
    caller = login_headers(client, svc, "app-b")
    auth.authorize(svc, "app-a", "app-b")
    for _ in range(LIMIT):
        assert query(client, caller, app_id="app-a").status_code == 200
    assert_throttled(query(client, caller, app_id="app-a"))
    assert_throttled(query(client, caller))
    assert query(client, headers).status_code == 200  # the owner's own budget is untouched


def test_an_application_limit_set_by_the_admin_applies_on_the_next_call(client, svc, headers):
    for _ in range(LIMIT):
        query(client, headers)
    assert_throttled(query(client, headers))
    assert auth.set_rate_limit(svc, "app-a", 5)["perMinute"] == 5
    reply = query(client, headers)
    assert reply.status_code == 200
    assert reply.headers["X-RateLimit-Limit"] == "5"
    auth.set_rate_limit(svc, "app-a", None)
    assert_throttled(query(client, headers))


def test_set_rate_limit_of_an_unknown_application_is_refused(svc):
    with pytest.raises(errors.AppNotFound):
        auth.set_rate_limit(svc, "nobody", 5)
    assert svc.redis.exists("dc:{nobody}:app") == 0


def test_device_api_and_health_are_not_limited(client, svc, headers):
    registered = client.post(REG, json={"nodeId": "n1"}, headers=headers).json
    basic = (registered["deviceId"], registered["psk"])
    for _ in range(LIMIT + 2):
        taken = client.get(f"/southbound/v1/devices/{basic[0]}/commands", auth=basic)
        assert taken.status_code == 200
        assert "X-RateLimit-Limit" not in taken.headers
        assert client.get("/healthz").status_code in (200, 503)


def test_failed_logins_are_limited_per_address_and_app_id(client, svc):
    auth.create_application(svc, app_id="app-a", secret="right")
    auth.create_application(svc, app_id="app-b", secret="right")
    for _ in range(2):
        assert client.post(LOGIN, data={"appId": "app-a", "secret": "wrong"}).status_code == 401
    refused = client.post(LOGIN, data={"appId": "app-a", "secret": "right"})
    assert refused.status_code == 403
    assert refused.json["error_code"] == "1010009"
    assert int(refused.headers["Retry-After"]) > 0
    assert "accessToken" not in refused.json
    assert client.post(LOGIN, data={"appId": "app-b", "secret": "right"}).status_code == 200
    from_elsewhere = client.post(
        LOGIN, data={"appId": "app-a", "secret": "right"}, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert from_elsewhere.status_code == 200


def test_good_logins_do_not_use_up_the_login_limit(client, svc):
    auth.create_application(svc, app_id="app-a", secret="right")
    for _ in range(5):
        assert client.post(LOGIN, json={"appId": "app-a", "secret": "right"}).status_code == 200


def test_the_default_limit_is_60000_a_minute(svc, headers):
    """A new application at the defaults: far more than any first hour's calls."""
    assert Config().rate_limit_per_minute == 60_000
    svc.config = svc.config.with_(rate_limit_per_minute=Config().rate_limit_per_minute)
    reply = create_app(services=svc).test_client().get(CMDS, headers=headers)
    assert reply.status_code == 200
    assert reply.headers["X-RateLimit-Limit"] == "60000"


def test_a_zero_default_means_unlimited_and_counts_nothing(svc, headers):
    svc.config = svc.config.with_(rate_limit_per_minute=0)
    client = create_app(services=svc).test_client()
    for _ in range(5):
        reply = query(client, headers)
        assert reply.status_code == 200
        assert "X-RateLimit-Limit" not in reply.headers
    assert not svc.redis.keys("dc:limits*")
    auth.set_rate_limit(svc, "app-a", 2)  # an application's own limit still applies
    assert [query(client, headers).status_code for _ in range(3)] == [200, 200, 403]
