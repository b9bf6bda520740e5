"""Query device reads in admission's round trip on one server (two steps on a cluster), and
what admission refuses answers nothing of that read: a logged-out or deleted application's
token, a frozen application, a call over the budget, another application's device."""

from __future__ import annotations

import pytest
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection

from app import create_app
from devcmd.domain import auth, devices
from devcmd.services import Services
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]
DEVICE = "/iocm/app/dm/v1.4.0/devices/{}"
SEC = "/iocm/app/sec/v1.1.0"


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def round_trips(monkeypatch) -> list[int]:
    """Counts every batch of commands sent to a server (one per round trip) in this process."""
    sent = [0]
    original = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent[0] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


def refused(reply) -> tuple[int, str]:
    return reply.status_code, reply.json["error_code"]


def test_query_device_is_one_round_trip_with_its_admission_on_one_server(
    svc, client, headers, device_id, round_trips
):
    assert client.get(DEVICE.format(device_id), headers=headers).status_code == 200  # caches
    before = round_trips[0]
    reply = client.get(DEVICE.format(device_id), headers=headers)
    assert (reply.status_code, reply.json["deviceId"]) == (200, device_id)
    # On a cluster the read is a step of its own, in its device's slot.
    assert round_trips[0] - before == (2 if isinstance(svc.redis, RedisCluster) else 1)


def test_the_answer_is_the_device_as_read_after_admission(svc, client, headers, device_id):
    reply = client.get(DEVICE.format(device_id), headers=headers).json
    assert (reply["deviceInfo"]["nodeId"], reply["pendingCommands"]) == ("node-1", 0)
    assert refused(client.get(DEVICE.format("unknown-device"), headers=headers)) == (
        404,
        "100418",
    )
    assert refused(client.get(DEVICE.format("bad id!"), headers=headers)) == (404, "100418")


def test_a_token_revoked_by_another_process_answers_nothing_of_the_device(
    svc, client, headers, device_id
):
    """The token is cached by this process; the logout runs in another one (its own Services),
    as on another gunicorn worker."""
    assert client.get(DEVICE.format(device_id), headers=headers).status_code == 200
    other = Services.from_config(svc.config)
    try:
        token = headers["Authorization"].split()[1]
        out = (
            create_app(services=other)
            .test_client()
            .post(f"{SEC}/logout", json={"accessToken": token})
        )
        assert out.status_code == 204
    finally:
        other.close()
    reply = client.get(DEVICE.format(device_id), headers=headers)
    assert refused(reply) == (401, "1010005")
    assert device_id not in reply.get_data(as_text=True)


def test_a_deleted_application_answers_nothing_of_the_device(svc, client, headers, app_id):
    device_id = devices.register(svc, app_id, "node-1", None, None)["deviceId"]
    assert client.get(DEVICE.format(device_id), headers=headers).status_code == 200
    auth.delete_application(svc, app_id, force=True)
    reply = client.get(DEVICE.format(device_id), headers=headers)
    assert refused(reply) == (401, "1010005")
    assert device_id not in reply.get_data(as_text=True)


def test_a_frozen_application_answers_nothing_of_the_device(
    svc, client, headers, app_id, device_id
):
    assert client.get(DEVICE.format(device_id), headers=headers).status_code == 200
    svc.apps.update(app_id, {"frozen": "1"})
    reply = client.get(DEVICE.format(device_id), headers=headers)
    assert refused(reply) == (403, "100247")
    assert device_id not in reply.get_data(as_text=True)


def test_a_call_over_the_budget_answers_nothing_of_the_device(
    svc, client, headers, app_id, device_id
):
    auth.set_rate_limit(svc, app_id, 2)
    calls = [client.get(DEVICE.format(device_id), headers=headers) for _ in range(3)]
    assert [c.status_code for c in calls[:2]] == [200, 200]
    assert refused(calls[2]) == (403, "1010009")
    assert device_id not in calls[2].get_data(as_text=True)
    assert calls[2].headers["X-RateLimit-Remaining"] == "0"


def test_another_applications_device_is_not_found_unless_granted(
    svc, client, headers, app_id, device_id
):
    auth.create_application(svc, app_id="app-b", secret="secret-b")
    token = auth.login(svc, "app-b", "secret-b")["accessToken"]
    b = {"app_key": "app-b", "Authorization": f"Bearer {token}"}
    assert refused(client.get(DEVICE.format(device_id), headers=b)) == (404, "100418")
    acting = client.get(DEVICE.format(device_id), query_string={"appId": app_id}, headers=b)
    assert refused(acting) == (403, "100217")  # not authorized
    auth.authorize(svc, owner=app_id, grantee="app-b")
    acting = client.get(DEVICE.format(device_id), query_string={"appId": app_id}, headers=b)
    assert (acting.status_code, acting.json["deviceId"]) == (200, device_id)


def test_a_server_that_lost_its_scripts_still_answers_and_counts_once(
    svc, client, headers, app_id, device_id
):
    """The admission script goes by sha in the read's pipeline: after NOSCRIPT it runs again,
    loaded, and the call is counted once."""
    auth.set_rate_limit(svc, app_id, 100)
    first = client.get(DEVICE.format(device_id), headers=headers)
    svc.redis.script_flush()
    second = client.get(DEVICE.format(device_id), headers=headers)
    assert (second.status_code, second.json["deviceId"]) == (200, device_id)
    left = [int(r.headers["X-RateLimit-Remaining"]) for r in (first, second)]
    assert left == [99, 98]
