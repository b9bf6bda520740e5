"""Purge of a deleted application against a real Redis and a real cluster: every record of it
goes, its tombstone stays, and another application's keys are byte-for-byte unchanged."""

from __future__ import annotations

import pytest

from devcmd import errors
from devcmd.domain import auth, commands, devices, idempotency, notifications, purge, revocations
from devcmd.store import keys
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CORE, "cluster")]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 3}}
DEAD_URL = "http://127.0.0.1:9/callback"
SHARED = ("dc:{b", "dc:apps", "dc:purging", "dc:workers", "dc:layout", "dc:receiver:")


def fill(svc, app_id: str) -> None:
    """Devices (one deleted), commands in every kind of state with callbacks, a task, tokens,
    a spent budget, an idempotency key and a grant: what an application leaves behind."""
    auth.create_application(svc, app_id=app_id, secret="secret")
    token = auth.login(svc, app_id, "secret")["accessToken"]
    auth.admit(svc, app_id, f"Bearer {token}", None)
    with idempotency.attempt(svc, app_id, "key-1", "fingerprint"):
        pass
    for node in ("n1", "n2", "n3"):
        device_id = devices.register(svc, app_id, node, None, None)["deviceId"]
        created = [
            commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": DEAD_URL})
            for _ in range(4)
        ]
        commands.cancel(svc, app_id, created[0]["commandId"])
        task_id = revocations.open_task(svc, app_id, device_id)["taskId"]
        while not revocations.sweep(svc, app_id, device_id, task_id).done:
            pass
        commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": DEAD_URL})
        notifications.flush(svc, app_id, device_id)
    devices.delete(svc, app_id, device_id)


def store(svc) -> dict[str, tuple[str, bytes]]:
    """Every devcmd key but the shared indexes: key -> (its value if a string, its DUMP)."""
    found = {}
    for server in svc.purge.servers().values():
        raw = server.connection_pool.connection_kwargs
        with type(server)(**{**raw, "decode_responses": False}) as binary:
            for key in server.scan_iter(match="dc:*", count=1000):
                if not key.startswith(SHARED):
                    value = server.get(key) if server.type(key) == "string" else ""
                    found[key] = (value, binary.dump(key))
    return found


def members(svc) -> list[str]:
    """Every member of the shared bucket indexes."""
    found = []
    for server in svc.purge.servers().values():
        for key in server.scan_iter(match="dc:{b*", count=1000):
            kind = server.type(key)
            if kind == "zset":
                found += server.zrange(key, 0, -1)
            elif kind == "set":
                found += server.smembers(key)
    return found


def of(app_id: str, key: str, value: str) -> bool:
    return (
        key.startswith((f"dc:{{{app_id}}}:", f"dc:{{{app_id}:"))
        or value == app_id
        or (key == keys.budget(app_id))
    )


def test_a_deleted_application_is_purged_and_no_other_record_changes(svc):
    svc.config = svc.config.with_(purge_delay=0.0, purge_batch=20)
    fill(svc, "gone")
    fill(svc, "gone-not")  # its keys match the deleted one's prefix: they must stay
    before = store(svc)
    others = {k: v for k, v in before.items() if not of("gone", k, v[0])}
    assert len(before) > len(others) > 20
    auth.delete_application(svc, "gone", force=True)

    steps = 0
    while not purge.purge_deleted(svc)["purged"]:
        steps += 1
        assert steps < 1000
    assert steps > 1  # bounded: purge_batch keys a step

    after = store(svc)
    assert sorted(k for k, v in after.items() if of("gone", k, v[0])) == [keys.app("gone")]
    assert {k: v for k, v in after.items() if k != keys.app("gone")} == others
    assert [m for m in members(svc) if m.startswith("gone/")] == []
    assert any(m.startswith("gone-not/") for m in members(svc))
    with pytest.raises(errors.AppExists):
        auth.create_application(svc, app_id="gone")
    assert purge.purge_deleted(svc) == {}  # done: nothing left to purge


def test_purge_waits_for_its_delay(svc):
    svc.config = svc.config.with_(purge_delay=3600.0)
    fill(svc, "gone")
    auth.delete_application(svc, "gone", force=True)
    assert sum(purge.purge_deleted(svc).values()) == 0
    assert commands.query(svc, "gone", None, 0, 2**62, 0, 1)[0] == 15
