"""EnOS identity: device names given at registration, lookup by them, orgId and authentication."""

from __future__ import annotations

import pytest

from tests.unit.conftest import login_headers

REG = "/iocm/app/reg/v1.1.0/deviceCredentials"
ENOS = "/connect-service/v2.1/commands"
NAMES = {"productKey": "pk-1", "deviceKey": "mqtt_01", "assetId": "oxWwM9i5"}


def register(client, headers, node_id="n1", **names):
    return client.post(REG, json={"nodeId": node_id, **names}, headers=headers)


def search(client, headers, query: str):
    return client.post(f"{ENOS}?action=search&{query}", headers=headers)


def test_registration_keeps_the_enos_names_and_shows_them(client, headers):
    reply = register(client, headers, **NAMES)
    assert reply.status_code == 200
    assert {k: reply.json[k] for k in NAMES} == NAMES
    info = client.get(f"/iocm/app/dm/v1.4.0/devices/{reply.json['deviceId']}", headers=headers)
    assert {k: info.json["deviceInfo"][k] for k in NAMES} == NAMES


def test_without_names_registration_answers_as_before(client, headers):
    reply = register(client, headers)
    assert set(reply.json) == {"deviceId", "verifyCode", "timeout", "psk"}


@pytest.mark.parametrize(
    ("names", "field"),
    [
        ({"assetId": "oxWwM9i5"}, "assetId"),
        ({"productKey": "pk-1", "deviceKey": "mqtt_01"}, "productKey + deviceKey"),
    ],
)
def test_names_are_unique_per_application(client, svc, headers, names, field):
    assert register(client, headers, "n1", **NAMES).status_code == 200
    taken = register(client, headers, "n2", **names)
    assert (taken.status_code, taken.json["error_code"]) == (409, "100416")
    assert taken.json["error_desc"].startswith(field)
    # The refused device claimed nothing: its nodeId is still free.
    assert register(client, headers, "n2").status_code == 200
    other = login_headers(client, svc, "app-b")
    assert register(client, other, "n1", **NAMES).status_code == 200


def test_an_asset_id_may_not_be_another_devices_id(client, headers):
    device_id = register(client, headers).json["deviceId"]
    reply = register(client, headers, "n2", assetId=device_id)
    assert (reply.status_code, reply.json["error_code"]) == (409, "100416")


@pytest.mark.parametrize(
    ("names", "field"),
    [
        ({"productKey": "pk"}, "productKey"),
        ({"deviceKey": "dk"}, "productKey"),
        ({"assetId": "a/b"}, "assetId"),
        ({"assetId": ""}, "assetId"),
        ({"deviceKey": "d" * 65, "productKey": "p"}, "deviceKey"),
        ({"productKey": 7, "deviceKey": "d"}, "productKey"),
    ],
)
def test_bad_names_are_refused(client, headers, names, field):
    reply = register(client, headers, **names)
    assert (reply.status_code, reply.json["error_code"]) == (400, "100022")
    assert f"{field}:" in reply.json["error_desc"]


def test_a_device_is_found_by_either_name_or_both(client, headers):
    register(client, headers, **NAMES)
    queries = [
        "orgId=app-a&assetId=oxWwM9i5",
        "orgId=app-a&productKey=pk-1&deviceKey=mqtt_01",
        "orgId=app-a&assetId=oxWwM9i5&productKey=pk-1&deviceKey=mqtt_01",
    ]
    for query in queries:
        reply = search(client, headers, query)
        assert (reply.status_code, reply.json["code"]) == (200, 0), reply.json


def test_names_that_disagree_are_99400(client, headers):
    register(client, headers, **NAMES)
    register(client, headers, "n2", assetId="other")
    reply = search(client, headers, "orgId=app-a&assetId=other&productKey=pk-1&deviceKey=mqtt_01")
    assert reply.json["code"] == 99400
    assert "different devices" in reply.json["submsg"]


@pytest.mark.parametrize(
    ("query", "code", "word"),
    [
        ("orgId=app-a", 99400, "assetId"),
        ("orgId=app-a&productKey=pk-1", 99400, "productKey"),
        ("orgId=app-a&assetId=nobody", 99404, "device"),
        ("orgId=app-a&productKey=pk-1&deviceKey=nobody", 99404, "device"),
        ("assetId=oxWwM9i5", 99400, "orgId"),
    ],
)
def test_naming_failures(client, headers, query, code, word):
    register(client, headers, **NAMES)
    reply = search(client, headers, query)
    assert (reply.status_code, reply.json["code"]) == (200, code)
    assert word in reply.json["submsg"]
    assert reply.json["data"] is None


def test_a_device_without_an_asset_id_answers_to_its_device_id(client, headers):
    device_id = register(client, headers).json["deviceId"]
    assert search(client, headers, f"orgId=app-a&assetId={device_id}").json["code"] == 0


def test_deleting_a_device_frees_its_names(client, headers):
    device_id = register(client, headers, **NAMES).json["deviceId"]
    client.delete(f"/iocm/app/dm/v1.4.0/devices/{device_id}", headers=headers)
    assert search(client, headers, "orgId=app-a&assetId=oxWwM9i5").json["code"] == 99404
    assert register(client, headers, "n1", **NAMES).status_code == 200


@pytest.mark.parametrize(
    ("headers_", "code"),
    [
        ({}, 99401),
        ({"app_key": "app-a"}, 99401),
        ({"app_key": "app-a", "Authorization": "Bearer forged"}, 99401),
    ],
)
def test_authentication_failures_use_the_enos_envelope(client, headers, headers_, code):
    register(client, headers, **NAMES)
    reply = search(client, headers_, "orgId=app-a&assetId=oxWwM9i5")
    assert (reply.status_code, reply.json["code"]) == (200, code)
    assert set(reply.json) == {"code", "msg", "submsg", "requestId", "data"}


def test_org_id_must_be_the_caller_or_have_authorized_it(client, svc, headers):
    other = login_headers(client, svc, "app-b")
    register(client, other, **NAMES)
    refused = search(client, headers, "orgId=app-b&assetId=oxWwM9i5")
    assert refused.json["code"] == 99403
    assert search(client, headers, "orgId=ghost&assetId=oxWwM9i5").json["code"] == 99403
    assert search(client, headers, "orgId=app-a&assetId=oxWwM9i5").json["code"] == 99404
    svc.apps.grant("app-b", "app-a")
    assert search(client, headers, "orgId=app-b&assetId=oxWwM9i5").json["code"] == 0


def test_poseidon_style_headers_work(client, headers):
    """urllib capitalizes header names (`App_key`) and poseidon adds its own token header."""
    register(client, headers, **NAMES)
    sent = {
        "App_key": headers["app_key"],
        "Authorization": headers["Authorization"],
        "Apim-accesstoken": "opaque",
        "Content-type": "application/json;charset=utf-8",
    }
    reply = client.post(f"{ENOS}?action=cancel&orgId=app-a&assetId=oxWwM9i5", headers=sent)
    assert (reply.json["code"], reply.json["data"]) == (0, [])
