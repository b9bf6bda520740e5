"""Why a revocation task ends PART_SUCCESS or FAILED (guarantee 3), and what it never does
(guarantee 2), on a real Redis: each reason set up for real, then the task read back through
the domain and as the OceanConnect API answers it.

The fixtures' sweep batch is 7 commands, so a scope of 20 takes three batches.
"""

from __future__ import annotations

import base64
import re
import time

import pytest

from app import create_app
from devcmd.clock import now_ms
from devcmd.domain import commands, devices, revocations
from devcmd.store import keys
from devcmd.store.notifications import Event
from tests.integration.test_revocations import statuses, sweep_to_end

pytestmark = pytest.mark.integration

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
URL = "http://127.0.0.1:9/cb"  # recorded in the outbox only: nothing is sent to it
TIME = re.compile(r"^\d{8}T\d{6}Z$")
FAILED_REASON = "no command in scope was still PENDING when swept"


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def headers(client, app_id) -> dict[str, str]:
    reply = client.post("/iocm/app/sec/v1.1.0/login", data={"appId": app_id, "secret": "secret-a"})
    return {"app_key": app_id, "Authorization": f"Bearer {reply.json['accessToken']}"}


def queue(svc, app_id, device_id, count, **options) -> list[str]:
    options = {"callbackUrl": URL} | options
    return [
        commands.create(svc, app_id, device_id, COMMAND, options)["commandId"] for _ in range(count)
    ]


def history(svc, app_id, device_id) -> dict[str, list[str]]:
    """commandId -> the statuses the outbox recorded for it, in order."""
    events: dict[str, list[str]] = {}
    for raw in svc.redis.lrange(keys.outbox(app_id, device_id), 0, -1):
        event = Event.parse(raw)
        for command_id in event.command_ids:
            events.setdefault(command_id, []).append(event.status)
    return events


def answered(client, headers, task_id) -> dict:
    """The task as `GET .../deviceCommandCancelTasks?taskId=` answers it."""
    reply = client.get(f"{TASKS}?taskId={task_id}", headers=headers)
    assert reply.status_code == 200, reply.json
    (task,) = reply.json["data"]
    assert all(TIME.match(task[name]) for name in ("creationTime", "startTime", "finishTime"))
    return task


def counts(task: dict) -> tuple:
    return task["status"], int(task["totalCount"]), int(task["cancelledCount"]), task["reason"]


@pytest.mark.parametrize("batches_first", [0, 1], ids=["before-the-sweep", "between-batches"])
def test_a_scoped_command_that_expired_first_makes_part_success(
    svc, client, headers, app_id, device_id, batches_first
):
    """The timer expires one of 20 scoped commands before the sweep reaches it (before the first
    batch, or after the first batch of 7): the sweep cancels the other 19, the task says
    PART_SUCCESS and why, and the expired command stays EXPIRED, never also CANCELED."""
    head = queue(svc, app_id, device_id, 10)
    (short,) = queue(svc, app_id, device_id, 1, expireTime=60)
    tail = queue(svc, app_id, device_id, 9)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    now = now_ms()
    for _ in range(batches_first):
        svc.revocations.sweep_batch(app_id, device_id, task_id, now, svc.config.sweep_batch)
    assert svc.southbound.tick(app_id, device_id, now + 61_000, 100).expired == 1
    batch = sweep_to_end(svc, app_id, device_id, task_id)
    assert (batch.status, batch.total, batch.cancelled) == ("PART_SUCCESS", 20, 19)
    assert set(statuses(svc, app_id, head + tail)) == {"CANCELED"}
    assert statuses(svc, app_id, [short]) == ["EXPIRED"]
    assert history(svc, app_id, device_id)[short] == ["EXPIRED"]
    reason = "1 command(s) in scope ended another way first"
    assert counts(revocations.get(svc, app_id, task_id)) == ("PART_SUCCESS", 20, 19, reason)
    assert counts(answered(client, headers, task_id)) == ("PART_SUCCESS", 20, 19, reason)


def test_scoped_commands_cancelled_singly_first_make_part_success(
    svc, client, headers, app_id, device_id
):
    """After the 201 and before the sweep, the application cancels two scoped commands one by
    one: the sweep cancels the other ten, and a retried sweep changes nothing."""
    scoped = queue(svc, app_id, device_id, 12)
    created = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert (created.status_code, created.json["status"], created.json["totalCount"]) == (
        201,
        "WAITING",
        12,
    )
    task_id = created.json["taskId"]
    for command_id in scoped[3:5]:
        reply = client.put(f"{CMDS}/{command_id}", json={"status": "CANCELED"}, headers=headers)
        assert (reply.status_code, reply.json["status"]) == (200, "CANCELED")
    batch = sweep_to_end(svc, app_id, device_id, task_id)
    assert (batch.status, batch.total, batch.cancelled) == ("PART_SUCCESS", 12, 10)
    again = revocations.sweep(svc, app_id, device_id, task_id)
    assert (again.status, again.cancelled, again.cancelled_now) == ("PART_SUCCESS", 10, 0)
    assert set(statuses(svc, app_id, scoped)) == {"CANCELED"}
    assert all(history(svc, app_id, device_id)[c] == ["CANCELED"] for c in scoped)
    reason = "2 command(s) in scope ended another way first"
    assert counts(revocations.get(svc, app_id, task_id)) == ("PART_SUCCESS", 12, 10, reason)
    assert counts(answered(client, headers, task_id)) == ("PART_SUCCESS", 12, 10, reason)
    swept = client.put(f"{CMDS}/{scoped[0]}", json={"status": "CANCELED"}, headers=headers)
    assert (swept.status_code, swept.json["error_code"]) == (409, "100435")


def test_a_fetch_after_the_201_gets_none_of_the_scope(svc, client, headers, app_id):
    """Guarantee 2, not a PART_SUCCESS: from the 201 on, the device gets only what it had been
    sent before (a retransmission) and what was queued after the task, never the scope, although
    the sweep has not run; the sweep then cancels the whole scope: SUCCESS."""
    device = devices.register(svc, app_id, "node-fetch", None, None)
    device_id = device["deviceId"]
    token = base64.b64encode(f"{device_id}:{device['psk']}".encode()).decode()
    take = f"/southbound/v1/devices/{device_id}/commands?max=100"
    auth = {"Authorization": f"Basic {token}"}
    (earlier,) = queue(svc, app_id, device_id, 1, maxRetransmit=1)
    assert [c["commandId"] for c in client.get(take, headers=auth).json["commands"]] == [earlier]
    scoped = queue(svc, app_id, device_id, 10)
    created = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert (created.status_code, created.json["totalCount"]) == (201, 10)
    assert [c["commandId"] for c in created.json["deviceCommands"]] == scoped
    later = queue(svc, app_id, device_id, 3)
    ack_overdue = now_ms() + int(svc.config.ack_timeout * 1000) + 1
    assert svc.southbound.tick(app_id, device_id, ack_overdue, 100).retransmitting == 1
    got = client.get(take, headers=auth).json["commands"]
    assert [c["commandId"] for c in got] == [earlier, *later]
    assert client.get(take, headers=auth).json["commands"] == []
    assert set(statuses(svc, app_id, scoped)) == {"PENDING"}  # fenced, not yet swept
    batch = sweep_to_end(svc, app_id, device_id, created.json["taskId"])
    assert (batch.status, batch.total, batch.cancelled) == ("SUCCESS", 10, 10)
    assert set(statuses(svc, app_id, scoped)) == {"CANCELED"}
    assert set(statuses(svc, app_id, [earlier, *later])) == {"SENT"}


def test_a_task_whose_whole_scope_ended_another_way_fails_with_a_reason(
    svc, client, headers, app_id, device_id
):
    """One scoped command expires and the other two are cancelled singly before the sweep:
    nothing is left to cancel, so the task is FAILED, cancelledCount 0, with the reason."""
    (short,) = queue(svc, app_id, device_id, 1, expireTime=60)
    others = queue(svc, app_id, device_id, 2)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    assert svc.southbound.tick(app_id, device_id, now_ms() + 61_000, 100).expired == 1
    for command_id in others:
        commands.cancel(svc, app_id, command_id)
    batch = sweep_to_end(svc, app_id, device_id, task_id)
    assert (batch.status, batch.total, batch.cancelled) == ("FAILED", 3, 0)
    assert statuses(svc, app_id, [short, *others]) == ["EXPIRED", "CANCELED", "CANCELED"]
    assert counts(revocations.get(svc, app_id, task_id)) == ("FAILED", 3, 0, FAILED_REASON)
    assert counts(answered(client, headers, task_id)) == ("FAILED", 3, 0, FAILED_REASON)


def test_a_scoped_command_past_its_expire_time_expires_even_if_the_timer_is_late(
    svc, app_id, device_id
):
    """SPEC 5: a command still undelivered after expireTime ends EXPIRED, whoever reaches it
    first; the sweep should not cancel it (and count it) just because the timer ran late."""
    (short,) = queue(svc, app_id, device_id, 1, expireTime=1)
    others = queue(svc, app_id, device_id, 2)
    task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
    time.sleep(1.2)  # past the expireTime; no timer runs in this test
    batch = sweep_to_end(svc, app_id, device_id, task_id)
    assert statuses(svc, app_id, [short, *others]) == ["EXPIRED", "CANCELED", "CANCELED"]
    assert (batch.status, batch.total, batch.cancelled) == ("PART_SUCCESS", 3, 2)
