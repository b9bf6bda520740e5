"""The `status` filter of GET .../deviceCommands on a real Redis: one or several statuses, the
DEFAULT spelling, with and without deviceId, exact totalSize across pages, combined with the
time window, commands of a deleted device, and 400 100022 for what is not a status."""

from __future__ import annotations

import itertools

import pytest

from app import create_app
from devcmd.clock import now_ms, to_huawei
from devcmd.domain import commands, devices, revocations, southbound
from devcmd.store import keys

pytestmark = pytest.mark.integration

CMDS = "/iocm/app/cmd/v1.4.0/deviceCommands"
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


@pytest.fixture
def client(svc):
    return create_app(services=svc).test_client()


@pytest.fixture
def fleet(svc, app_id, monkeypatch) -> dict:
    """Two devices, ten commands created one second apart (A B A B ...), then moved: on A two
    fetched (one then acknowledged, one finished), on B one cancelled. Returns the device ids
    and each command's (device, creation ms, status) as this test made them."""
    clock = itertools.count(now_ms() // 1000 * 1000 - 60_000, 1000)
    monkeypatch.setattr(commands, "now_ms", lambda: next(clock))
    ids = {name: devices.register(svc, app_id, name, None, None)["deviceId"] for name in "AB"}
    made = {}
    for i in range(10):
        name = "AB"[i % 2]
        record = commands.create(svc, app_id, ids[name], COMMAND, {})
        made[record["commandId"]] = [name, record["creationTime"], "PENDING"]
    monkeypatch.undo()
    on_a = [cid for cid, (name, _, _) in made.items() if name == "A"]
    on_b = [cid for cid, (name, _, _) in made.items() if name == "B"]
    assert [c["commandId"] for c in southbound.fetch(svc, app_id, ids["A"], 2)] == on_a[:2]
    southbound.ack(svc, app_id, ids["A"], on_a[0])
    southbound.finish(svc, app_id, ids["A"], on_a[1], "SUCCESSFUL", {"ok": 1})
    commands.cancel(svc, app_id, on_b[3])
    made[on_a[0]][2], made[on_a[1]][2], made[on_b[3]][2] = "DELIVERED", "SUCCESSFUL", "CANCELED"
    return {"devices": ids, "made": made}


def expected(fleet: dict, statuses: set[str], device: str | None = None, window=None) -> list:
    """(commandId, status) of the matching commands, newest first."""
    start, end = window or (0, 2**53)
    rows = [
        (ms, cid, status)
        for cid, (name, ms, status) in fleet["made"].items()
        if status in statuses and device in (None, name) and start <= ms <= end
    ]
    return [(cid, status) for _, cid, status in sorted(rows, reverse=True)]


def query(client, headers, **params) -> tuple[int, list]:
    reply = client.get(CMDS, query_string=params, headers=headers)
    assert reply.status_code == 200, reply.json
    assert reply.json["pagination"]["pageSize"] == params.get("pageSize", 1000)
    rows = [(c["commandId"], c["status"]) for c in reply.json["data"]]
    return reply.json["pagination"]["totalSize"], rows


def test_one_status_for_the_application_and_for_one_device(client, headers, fleet):
    pending = expected(fleet, {"PENDING"})
    assert len(pending) == 7
    assert query(client, headers, status="PENDING") == (7, pending)
    device_a = fleet["devices"]["A"]
    on_a = expected(fleet, {"PENDING"}, "A")
    assert query(client, headers, status="PENDING", deviceId=device_a) == (len(on_a), on_a)
    assert query(client, headers, status="TIMEOUT") == (0, [])


def test_several_statuses_and_the_default_spelling(client, headers, fleet):
    moved = expected(fleet, {"DELIVERED", "SUCCESSFUL", "CANCELED"})
    assert query(client, headers, status="CANCELED,DELIVERED,SUCCESSFUL") == (3, moved)
    assert query(client, headers, status=" SUCCESSFUL , CANCELED, DELIVERED") == (3, moved)
    # DEFAULT is PENDING (older OceanConnect pages); the answer says PENDING
    assert query(client, headers, status="DEFAULT") == query(client, headers, status="PENDING")
    device_a = fleet["devices"]["A"]
    on_a = expected(fleet, {"PENDING", "SUCCESSFUL"}, "A")
    got = query(client, headers, status="DEFAULT,SUCCESSFUL", deviceId=device_a)
    assert got == (len(on_a), on_a)
    everything = expected(fleet, set(commands.STATUSES))
    assert query(client, headers, status=",".join(commands.STATUSES)) == (10, everything)


@pytest.mark.parametrize("device", [None, "A"])
def test_total_size_is_exact_on_every_page(client, headers, fleet, device):
    statuses = {"PENDING", "CANCELED", "SUCCESSFUL"}
    want = expected(fleet, statuses, device)
    params = {"status": ",".join(sorted(statuses)), "pageSize": 2}
    if device:
        params["deviceId"] = fleet["devices"][device]
    seen = []
    for page_no in range(len(want) // 2 + 2):
        total, rows = query(client, headers, pageNo=page_no, **params)
        assert total == len(want)
        seen += rows
    assert seen == want


def test_status_combines_with_the_time_window(client, headers, fleet):
    times = sorted(ms for _, ms, _ in fleet["made"].values())
    window = (times[2], times[6])  # whole seconds: the window's own resolution
    want = expected(fleet, {"PENDING", "CANCELED"}, window=window)
    assert 0 < len(want) < 5
    got = query(
        client,
        headers,
        status="PENDING,CANCELED",
        startTime=to_huawei(window[0]),
        endTime=to_huawei(window[1]),
    )
    assert got == (len(want), want)


def test_commands_of_a_deleted_device_are_still_found(client, headers, fleet, svc, app_id):
    """Deleting a device drops it from the application's device index, not its commands."""
    devices.delete(svc, app_id, fleet["devices"]["B"])
    assert query(client, headers, status="PENDING") == (7, expected(fleet, {"PENDING"}))


def test_an_unknown_device_matches_nothing_and_leaves_no_trace(client, headers, fleet, svc, app_id):
    reply = client.post(
        CMDS, json={"deviceId": "no-such-device", "command": COMMAND}, headers=headers
    )
    assert reply.status_code == 404
    assert query(client, headers, status="PENDING", deviceId="no-such-device") == (0, [])
    assert svc.redis.smembers(keys.app_command_device_ids(app_id)) == set(fleet["devices"].values())


@pytest.mark.parametrize("status", ["DONE", "pending", "PENDING,", "PENDING,,SENT", "", "WAITING"])
def test_what_is_not_a_status_is_refused(client, headers, fleet, status):
    reply = client.get(CMDS, query_string={"status": status}, headers=headers)
    assert reply.status_code == 400
    assert reply.json["error_code"] == "100022"
    assert "status" in reply.json["error_desc"]


@pytest.mark.parametrize("device", [None, "A"])
def test_swept_commands_are_found_by_their_new_status(client, headers, fleet, svc, app_id, device):
    """A revocation sweep leaves its index moves as status debt; a query pays it first."""
    device_a = fleet["devices"]["A"]
    task = revocations.open_task(svc, app_id, device_a)
    while not revocations.sweep(svc, app_id, device_a, task["taskId"]).done:
        pass
    assert svc.redis.llen(keys.status_debt(app_id, device_a)) > 0
    for cid, (name, _, status) in fleet["made"].items():
        if name == "A" and status == "PENDING":
            fleet["made"][cid][2] = "CANCELED"
    params = {"deviceId": device_a} if device else {}
    want = expected(fleet, {"PENDING", "CANCELED"}, device)
    assert query(client, headers, status="CANCELED,PENDING", **params) == (len(want), want)
    assert svc.redis.llen(keys.status_debt(app_id, device_a)) == 0
    want = expected(fleet, {"PENDING"}, device)
    assert query(client, headers, status="PENDING", **params) == (len(want), want)
