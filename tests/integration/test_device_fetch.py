"""A device's fetch checks its credentials in the fetch script itself once this process has seen
them succeed: one round trip for a device polling an empty queue on one server, and a psk
changed or a device deleted by another process is refused at once, with nothing handed out."""

from __future__ import annotations

import base64

import pytest
from redis.cluster import RedisCluster

from app import create_app
from devcmd.domain import commands, devices
from devcmd.services import Services
from tests import backends
from tests.integration import test_admission

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
round_trips = test_admission.round_trips  # the fixture counting round trips


def basic(device_id: str, psk: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{device_id}:{psk}".encode()).decode()}


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def device(svc, app_id) -> dict:
    return devices.register(svc, app_id, "node-f", None, None)


def fetch(client, device: dict, psk: str | None = None, query: str = ""):
    url = f"/southbound/v1/devices/{device['deviceId']}/commands{query}"
    return client.get(url, headers=basic(device["deviceId"], psk or device["psk"]))


def status(svc, app_id: str, command_id: str) -> str:
    return commands.get(svc, app_id, command_id)["status"]


def in_another_process(svc, work):
    other = Services.from_config(svc.config)
    try:
        return work(other)
    finally:
        other.close()


def test_a_device_seen_before_fetches_in_one_round_trip(svc, client, app_id, device, round_trips):
    assert fetch(client, device).json == {"commands": []}
    before = round_trips[0]
    assert fetch(client, device).json == {"commands": []}
    # On a cluster: the timer index, then the script (another slot); the record is not read.
    assert round_trips[0] - before == (2 if isinstance(svc.redis, RedisCluster) else 1)
    queued = commands.create(svc, app_id, device["deviceId"], COMMAND, {})["commandId"]
    assert [c["commandId"] for c in fetch(client, device).json["commands"]] == [queued]
    assert status(svc, app_id, queued) == "SENT"


def test_a_psk_changed_elsewhere_is_refused_at_once_and_nothing_is_handed_out(
    svc, client, app_id, device
):
    assert fetch(client, device).status_code == 200  # this process accepts the psk
    queued = commands.create(svc, app_id, device["deviceId"], COMMAND, {})["commandId"]
    renewed = in_another_process(
        svc,
        lambda other: devices.register(
            other, app_id, "node-f", None, None, device_id=device["deviceId"]
        ),
    )
    old = fetch(client, device)
    assert (old.status_code, old.json["error_code"]) == (401, "200401")
    assert status(svc, app_id, queued) == "PENDING"
    assert fetch(client, device).status_code == 401  # and again, now by the separate check
    new = fetch(client, device, renewed["psk"])
    assert [c["commandId"] for c in new.json["commands"]] == [queued]


def test_a_device_deleted_elsewhere_is_refused_at_once(svc, client, app_id, device):
    assert fetch(client, device).status_code == 200
    queued = commands.create(svc, app_id, device["deviceId"], COMMAND, {})["commandId"]
    in_another_process(svc, lambda other: devices.delete(other, app_id, device["deviceId"]))
    reply = fetch(client, device)
    assert (reply.status_code, reply.json["error_code"]) == (401, "200401")
    assert status(svc, app_id, queued) != "SENT"


def test_a_wrong_psk_for_an_accepted_device_is_refused_and_the_right_one_still_works(
    svc, client, app_id, device
):
    assert fetch(client, device).status_code == 200
    queued = commands.create(svc, app_id, device["deviceId"], COMMAND, {})["commandId"]
    wrong = fetch(client, device, "0" * 32)
    assert (wrong.status_code, wrong.json["error_code"]) == (401, "200401")
    assert status(svc, app_id, queued) == "PENDING"
    assert [c["commandId"] for c in fetch(client, device).json["commands"]] == [queued]


def test_credentials_are_checked_before_the_query(svc, client, device):
    assert fetch(client, device).status_code == 200
    bad = fetch(client, device, "0" * 32, "?max=lots")
    assert (bad.status_code, bad.json["error_code"]) == (401, "200401")
    reply = fetch(client, device, query="?max=lots")
    assert reply.status_code == 400
    assert "max" in reply.get_data(as_text=True)
