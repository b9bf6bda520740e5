"""Reads of commands (lua/read_commands.lua): a page answers every field each command holds
(callback URLs numbered or inline, delivery fields, statuses, the time window), the application
listing merges devices on every server, loads keep their order and skip what is gone, and a
server that lost its scripts still answers (status filters too)."""

from __future__ import annotations

import itertools

import pytest

from devcmd.clock import now_ms
from devcmd.domain import commands, devices, southbound
from devcmd.store import commands as command_store
from devcmd.store import keys
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]

COMMAND = {"serviceId": "Light", "method": "SET", "paras": {"level": 3, "big": 2**63 - 1}}


@pytest.fixture
def clock(monkeypatch) -> itertools.count:
    """Creation times one second apart, so every page has one order to compare with."""
    ticks = itertools.count(now_ms() // 1000 * 1000 - 30_000, 1000)
    monkeypatch.setattr(commands, "now_ms", lambda: next(ticks))
    return ticks


def create(svc, app_id: str, device_id: str, url: str | None = None, **options) -> dict:
    return commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": url, **options})


def test_a_page_answers_every_field_each_command_holds(
    svc, app_id, device_id, clock, monkeypatch
) -> None:
    monkeypatch.setattr(keys, "CALLBACK_URLS_PER_DEVICE", 1)  # the second URL is stored inline
    urls = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/a", None, "http://127.0.0.1:9/b"]
    made = [create(svc, app_id, device_id, url, expireTime=60 + n) for n, url in enumerate(urls)]
    made += [create(svc, app_id, device_id, maxRetransmit=2) for _ in range(3)]
    ids = [m["commandId"] for m in made]
    assert [c["commandId"] for c in southbound.fetch(svc, app_id, device_id, 3)] == ids[:3]
    southbound.ack(svc, app_id, device_id, ids[0])
    southbound.finish(svc, app_id, device_id, ids[1], "FAILED", {"why": [1, None]})
    commands.cancel(svc, app_id, ids[3])
    statuses = ["DELIVERED", "FAILED", "SENT", "CANCELED", "PENDING", "PENDING", "PENDING"]

    total, page = commands.query(svc, app_id, device_id, 0, 2**53, 0, 100)

    assert total == len(made)
    newest_first = list(reversed(made))
    for record, created, status in zip(page, newest_first, reversed(statuses), strict=True):
        fixed = {k: v for k, v in record.items() if k in created}
        assert fixed == created | {"status": status}
    delivery = {r["commandId"]: {k: v for k, v in r.items() if k not in made[0]} for r in page}
    assert [delivery[cid].get("issuedTimes") for cid in ids] == [1, 1, 1, None, None, None, None]
    result = {"resultCode": "FAILED", "resultDetail": {"why": [1, None]}}
    assert delivery[ids[1]]["result"] == result
    assert set(delivery[ids[0]]) == {"issuedTimes", "platformIssuedTime", "deliveredTime"}
    assert page == svc.commands.load(app_id, [(device_id, cid) for cid in reversed(ids)])


def test_a_page_is_the_window_from_its_offset_with_the_windows_exact_total(
    svc, app_id, device_id, clock
) -> None:
    made = [create(svc, app_id, device_id) for _ in range(7)]
    window = (made[1]["creationTime"], made[5]["creationTime"])
    total, page = commands.query(svc, app_id, device_id, *window, 1, 2)
    assert total == 5
    assert [c["commandId"] for c in page] == [made[3]["commandId"], made[2]["commandId"]]
    assert commands.query(svc, app_id, device_id, *window, 3, 2) == (5, [])


def test_the_application_listing_merges_every_devices_commands(svc, app_id, clock) -> None:
    """Devices on several masters of a cluster: the page's records are read per device, one
    pipeline per server, and equal what each device's own listing answers."""
    fleet = [devices.register(svc, app_id, f"n{i}", None, None)["deviceId"] for i in range(6)]
    made = [create(svc, app_id, fleet[i % 6]) for i in range(12)]
    each = {
        c["commandId"]: c
        for device_id in fleet
        for c in commands.query(svc, app_id, device_id, 0, 2**53, 0, 100)[1]
    }
    pages = [commands.query(svc, app_id, None, 0, 2**53, number, 5) for number in range(3)]
    assert {total for total, _ in pages} == {12}
    listed = [c for _, page in pages for c in page]
    assert [c["commandId"] for c in listed] == [m["commandId"] for m in reversed(made)]
    assert listed == [each[c["commandId"]] for c in listed]


def test_loads_keep_their_order_and_skip_commands_that_are_gone(
    svc, app_id, clock, monkeypatch
) -> None:
    monkeypatch.setattr(command_store, "READ_CHUNK", 2)  # several runs for one device
    a, b = (devices.register(svc, app_id, n, None, None)["deviceId"] for n in "ab")
    on_a = [create(svc, app_id, a)["commandId"] for _ in range(4)]
    on_b = create(svc, app_id, b)["commandId"]
    svc.redis.hdel(keys.documents(app_id, a), on_a[2])  # a create that stopped half way
    pairs = [(a, on_a[3]), (b, on_b), (a, "unknown"), (a, on_a[2]), (a, on_a[0]), (a, on_a[3])]
    loaded = svc.commands.load(app_id, pairs)
    assert [(c["deviceId"], c["commandId"]) for c in loaded] == [
        (a, on_a[3]),
        (b, on_b),
        (a, on_a[0]),
        (a, on_a[3]),
    ]


def test_a_server_that_lost_its_scripts_still_answers_pages(svc, app_id, clock) -> None:
    fleet = [devices.register(svc, app_id, f"n{i}", None, None)["deviceId"] for i in range(3)]
    made = [create(svc, app_id, fleet[i % 3])["commandId"] for i in range(6)]
    svc.redis.script_flush()
    assert [c["commandId"] for c in commands.query(svc, app_id, fleet[0], 0, 2**53, 0, 9)[1]] == [
        made[3],
        made[0],
    ]
    svc.redis.script_flush()
    listed = commands.query(svc, app_id, None, 0, 2**53, 0, 9)[1]
    assert [c["commandId"] for c in listed] == made[::-1]
    commands.cancel(svc, app_id, made[3])
    svc.redis.script_flush()
    canceled = commands.query(svc, app_id, fleet[0], 0, 2**53, 0, 9, ["CANCELED", "PENDING"])
    assert [(c["commandId"], c["status"]) for c in canceled[1]] == [
        (made[3], "CANCELED"),
        (made[0], "PENDING"),
    ]
