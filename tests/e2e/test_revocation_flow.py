"""Revocation end to end: an OceanConnect client over HTTP, gunicorn, a Celery worker, Redis and
a callback receiver, all real processes on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import defaultdict

import pytest

from devcmd.config import Config
from tests import backends
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.receiver import Delivery, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.backends(*backends.CLUSTERED)]

CALLBACK_TIMEOUT = 30.0
SETTLE = 1.0  # seconds to keep listening after the last expected callback, to catch duplicates


def login_and_register(oc: OceanConnect, node_id: str) -> str:
    """Log in, register one device, return its deviceId."""
    login = oc.login()
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["tokenType"] == "bearer"
    assert tokens["expiresIn"] == 3600
    assert tokens["scope"] == "default"
    assert tokens["accessToken"]
    assert tokens["refreshToken"]
    registered = oc.register_device(node_id)
    assert registered.status_code == 200, registered.text
    assert registered.json()["deviceId"]
    return registered.json()["deviceId"]


def create_commands(oc: OceanConnect, device_id: str, count: int, callback_url: str) -> list[str]:
    """Queue `count` commands, each answered 201 PENDING; returns their ids in creation order."""
    ids = []
    for i in range(count):
        response = oc.create_command(device_id, "SET_LEVEL", {"level": i}, callback_url)
        assert response.status_code == 201, response.text
        command = response.json()
        assert command["status"] == "PENDING"
        assert command["deviceId"] == device_id
        assert command["appId"] == oc.app_id
        assert command["callbackUrl"] == callback_url
        assert command["command"] == {
            "serviceId": "Switch",
            "method": "SET_LEVEL",
            "paras": {"level": i},
        }
        ids.append(command["commandId"])
    assert len(set(ids)) == count
    return ids


def cancel_callbacks(deliveries: list[Delivery]) -> dict[str, list[Delivery]]:
    """Accepted deliveries grouped by commandId."""
    by_command: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        by_command[delivery.body["commandId"]].append(delivery)
    return by_command


def assert_one_cancel_callback_each(
    receiver: Receiver, path: str, device_id: str, command_ids: list[str]
) -> None:
    """Exactly one CANCELED callback per command, with the OceanConnect body and a webhook-id."""
    receiver.wait_for_accepted(set(command_ids), CALLBACK_TIMEOUT)
    time.sleep(SETTLE)
    deliveries = receiver.deliveries()
    assert all(d.status == 204 for d in deliveries)
    by_command = cancel_callbacks(deliveries)
    assert sorted(by_command) == sorted(command_ids)
    assert {cid: len(ds) for cid, ds in by_command.items() if len(ds) != 1} == {}
    for command_id, (delivery,) in by_command.items():
        assert delivery.path == path
        assert delivery.body == {
            "deviceId": device_id,
            "commandId": command_id,
            "result": {"resultCode": "CANCELED", "resultDetail": None},
        }
        assert delivery.headers["content-type"].startswith("application/json")
        assert delivery.headers["webhook-id"]
        assert delivery.headers["webhook-timestamp"].isdigit()
    webhook_ids = {d.headers["webhook-id"] for d in deliveries}
    assert len(webhook_ids) == len(command_ids)


def assert_all_canceled(oc: OceanConnect, device_id: str, command_ids: list[str]) -> None:
    response = oc.query_commands(device_id)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["pagination"] == {"pageNo": 0, "pageSize": 1000, "totalSize": len(command_ids)}
    assert sorted(c["commandId"] for c in page["data"]) == sorted(command_ids)
    assert {c["commandId"]: c["status"] for c in page["data"] if c["status"] != "CANCELED"} == {}


def test_revocation_task_cancels_every_pending_command_and_calls_back(
    oceanconnect: OceanConnect, receiver: Receiver
) -> None:
    device_id = login_and_register(oceanconnect, "meter-0001")
    callback_url = receiver.url("/oc/commands")
    command_ids = create_commands(oceanconnect, device_id, 200, callback_url)

    created = oceanconnect.create_cancel_task(device_id)

    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "WAITING"
    assert task["totalCount"] == 200
    assert task["deviceId"] == device_id
    assert task["appId"] == oceanconnect.app_id
    inline = min(200, Config().task_inline_commands)
    assert [c["commandId"] for c in task["deviceCommands"]] == command_ids[:inline]
    assert {c["status"] for c in task["deviceCommands"]} <= {"PENDING", "CANCELED"}

    finished = oceanconnect.wait_cancel_task(task["taskId"])
    assert finished["status"] == "SUCCESS", finished
    assert finished["taskId"] == task["taskId"]
    assert finished["totalCount"] == 200
    assert finished["cancelledCount"] == 200
    assert_all_canceled(oceanconnect, device_id, command_ids)
    assert_one_cancel_callback_each(receiver, "/oc/commands", device_id, command_ids)


def test_second_task_right_after_has_empty_scope_and_succeeds(
    oceanconnect: OceanConnect, receiver: Receiver
) -> None:
    device_id = login_and_register(oceanconnect, "meter-0002")
    command_ids = create_commands(oceanconnect, device_id, 10, receiver.url())

    first = oceanconnect.create_cancel_task(device_id)
    second = oceanconnect.create_cancel_task(device_id)

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert first.json()["totalCount"] == 10
    assert second.json()["status"] == "WAITING"
    assert second.json()["totalCount"] == 0
    assert second.json()["deviceCommands"] == []
    assert second.json()["taskId"] != first.json()["taskId"]
    done_first = oceanconnect.wait_cancel_task(first.json()["taskId"])
    done_second = oceanconnect.wait_cancel_task(second.json()["taskId"])
    assert (done_first["status"], done_first["totalCount"], done_first["cancelledCount"]) == (
        "SUCCESS",
        10,
        10,
    )
    assert (done_second["status"], done_second["totalCount"], done_second["cancelledCount"]) == (
        "SUCCESS",
        0,
        0,
    )
    assert_all_canceled(oceanconnect, device_id, command_ids)
    assert_one_cancel_callback_each(receiver, "/callbacks", device_id, command_ids)


def test_cancelling_a_cancelled_command_answers_409_100435(
    oceanconnect: OceanConnect, receiver: Receiver
) -> None:
    device_id = login_and_register(oceanconnect, "meter-0003")
    single, swept = create_commands(oceanconnect, device_id, 2, receiver.url())

    first = oceanconnect.cancel_command(single)
    again = oceanconnect.cancel_command(single)
    task = oceanconnect.create_cancel_task(device_id)
    assert task.status_code == 201, task.text
    assert oceanconnect.wait_cancel_task(task.json()["taskId"])["status"] == "SUCCESS"
    after_task = oceanconnect.cancel_command(swept)

    assert first.status_code == 200, first.text
    assert first.json()["commandId"] == single
    assert first.json()["status"] == "CANCELED"
    for refused in (again, after_task):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error_code"] == "100435"
        assert refused.json()["error_desc"]
    assert_all_canceled(oceanconnect, device_id, [single, swept])
    assert_one_cancel_callback_each(receiver, "/callbacks", device_id, [single, swept])


def test_task_scope_excludes_commands_cancelled_singly_before_it(
    oceanconnect: OceanConnect, receiver: Receiver
) -> None:
    device_id = login_and_register(oceanconnect, "meter-0004")
    command_ids = create_commands(oceanconnect, device_id, 20, receiver.url())
    singly = command_ids[3:20:4]
    for command_id in singly:
        response = oceanconnect.cancel_command(command_id)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "CANCELED"
    in_scope = [c for c in command_ids if c not in singly]

    created = oceanconnect.create_cancel_task(device_id)

    assert created.status_code == 201, created.text
    assert created.json()["totalCount"] == 15
    assert [c["commandId"] for c in created.json()["deviceCommands"]] == in_scope
    finished = oceanconnect.wait_cancel_task(created.json()["taskId"])
    assert (finished["status"], finished["totalCount"], finished["cancelledCount"]) == (
        "SUCCESS",
        15,
        15,
    )
    assert_all_canceled(oceanconnect, device_id, command_ids)
    assert_one_cancel_callback_each(receiver, "/callbacks", device_id, command_ids)


def test_failed_callbacks_are_retried_with_the_same_webhook_id(
    oceanconnect: OceanConnect, flaky_receiver: Receiver
) -> None:
    device_id = login_and_register(oceanconnect, "meter-0005")
    command_ids = create_commands(oceanconnect, device_id, 20, flaky_receiver.url())

    created = oceanconnect.create_cancel_task(device_id)

    assert created.status_code == 201, created.text
    assert oceanconnect.wait_cancel_task(created.json()["taskId"])["status"] == "SUCCESS"
    flaky_receiver.wait_for_accepted(set(command_ids), CALLBACK_TIMEOUT)
    time.sleep(SETTLE)
    by_command = cancel_callbacks(flaky_receiver.deliveries())
    assert sorted(by_command) == sorted(command_ids)
    webhook_ids = set()
    for command_id, attempts in by_command.items():
        assert [a.status for a in attempts] == [500, 204], (command_id, attempts)
        assert len({a.headers["webhook-id"] for a in attempts}) == 1, attempts
        assert all(a.body["result"]["resultCode"] == "CANCELED" for a in attempts)
        webhook_ids.add(attempts[0].headers["webhook-id"])
    assert len(webhook_ids) == 20


def standard_webhook_signature(secret: str, delivery: Delivery) -> str:
    """The `v1,<base64 HMAC-SHA256>` a Standard Webhooks sender puts in `webhook-signature`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    headers = delivery.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + delivery.raw
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_callbacks_carry_a_standard_webhooks_signature(
    oceanconnect: OceanConnect, receiver: Receiver, application: dict[str, str]
) -> None:
    device_id = login_and_register(oceanconnect, "meter-0006")
    command_ids = create_commands(oceanconnect, device_id, 3, receiver.url())
    created = oceanconnect.create_cancel_task(device_id)
    assert created.status_code == 201, created.text

    deliveries = receiver.wait_for_accepted(set(command_ids), CALLBACK_TIMEOUT)

    assert sorted(d.body["commandId"] for d in deliveries) == sorted(command_ids)
    for delivery in deliveries:
        expected = standard_webhook_signature(application["webhookSecret"], delivery)
        assert expected in delivery.headers.get("webhook-signature", "").split()
        assert abs(time.time() - int(delivery.headers["webhook-timestamp"])) < 300
