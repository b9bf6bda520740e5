"""`devcmd migrate` on a store filled by the previous layout's code (tests/layout_v2): every
query answers as layout 2 did, twice is harmless, an interrupted run is finished by the next,
and processes refuse an unmigrated store."""

from __future__ import annotations

import itertools

import pytest

from devcmd import errors
from devcmd.domain import auth, commands, devices, notifications, retention, revocations
from devcmd.services import Services
from devcmd.store import keys, layout, migration
from tests import backends, layout_v2
from tests.integration.test_admin_cli import devcmd

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]

APPS, DEVICES, PER_DEVICE = ("app-m", "app-n"), 3, 6
_clock = itertools.count(1_800_000_000_000, 7)


def record(app_id: str, device_id: str, i: int) -> dict:
    """A command as domain.commands.create built it, varied in every optional field."""
    extra = {"pendingTtl": 30, "timeout": 5, "commandType": 1} if i % 3 == 2 else {}
    return {
        "commandId": f"{device_id[:8]}{i:024x}",
        "appId": app_id,
        "deviceId": device_id,
        "serviceId": "Light",
        "method": "SET",
        "paras": {"level": i} if i % 2 else {},
        "callbackUrl": f"http://127.0.0.1:9/cb{i % 2}" if i % 3 else None,
        "expireTime": 3600,
        "maxRetransmit": i % 2,
        "creationTime": next(_clock),
    } | extra


@pytest.fixture
def legacy(svc) -> dict[str, list[dict]]:
    """A store as layout 2 left it: per application, its commands as layout 2 answered them,
    in PENDING, SENT, DELIVERED, SUCCESSFUL and CANCELED."""
    svc.redis.set(keys.layout(), f"2/{svc.config.index_buckets}")
    written: dict[str, list[tuple[str, str]]] = {}
    for app_id in APPS:
        auth.create_application(svc, app_id=app_id, secret="secret")
        written[app_id] = []
        for d in range(DEVICES):
            device_id = devices.register(svc, app_id, f"node-{d}", None, None)["deviceId"]
            for i in range(PER_DEVICE):
                made = record(app_id, device_id, i)
                layout_v2.create(svc.redis, made, made["creationTime"] + 3_600_000)
                written[app_id].append((device_id, made["commandId"]))
            move_on(
                svc, app_id, device_id, [cid for dev, cid in written[app_id] if dev == device_id]
            )
    return {
        app_id: [layout_v2.read(svc.redis, app_id, dev, cid) for dev, cid in pairs]
        for app_id, pairs in written.items()
    }


def move_on(svc: Services, app_id: str, device_id: str, ids: list[str]) -> None:
    """Take some of a device's commands out of PENDING with the scripts layout 2 shared."""
    now = next(_clock)
    svc.southbound.fetch(app_id, device_id, now, 3, 60_000)  # the first three: SENT
    svc.southbound.ack(app_id, device_id, ids[1], now)
    svc.southbound.finish(app_id, device_id, ids[2], now, "SUCCESSFUL", '{"ok":1}')
    svc.commands.cancel(app_id, device_id, ids[3], now)


def answers(svc: Services, app_id: str, device_id: str) -> dict:
    """What the API answers from the store: every command, pages and a status filter."""
    pages = [commands.query(svc, app_id, None, 0, 2**62, page, 4) for page in range(5)]
    return {
        "pages": pages,
        "device": commands.query(svc, app_id, device_id, 0, 2**62, 0, 100),
        "pending": commands.query(svc, app_id, None, 0, 2**62, 0, 100, ["PENDING", "SENT"]),
    }


def expected(rows: list[dict], device_id: str) -> dict:
    """The same answers computed from layout 2's records (newest first, ties by id)."""
    newest = sorted(rows, key=lambda r: (r["creationTime"], r["commandId"]), reverse=True)
    live = [r for r in newest if r["status"] in ("PENDING", "SENT")]
    mine = [r for r in newest if r["deviceId"] == device_id]
    return {
        "pages": [(len(newest), newest[page * 4 : page * 4 + 4]) for page in range(5)],
        "device": (len(mine), mine),
        "pending": (len(live), live),
    }


def test_processes_refuse_an_unmigrated_store_and_name_the_migration(svc, legacy):
    with pytest.raises(layout.LayoutMismatch, match="devcmd migrate"):
        Services.from_config(svc.config)


def test_migrated_store_answers_every_query_as_layout_2_did(svc, legacy):
    assert (
        migration.migrate(svc.redis, svc.config.index_buckets) == len(APPS) * DEVICES * PER_DEVICE
    )
    fresh = Services.from_config(svc.config)  # the layout is accepted again
    try:
        for app_id, rows in legacy.items():
            for row in rows:
                assert commands.get(fresh, app_id, row["commandId"]) == row
            device_id = rows[0]["deviceId"]
            assert answers(fresh, app_id, device_id) == expected(rows, device_id)
            task = revocations.open_task(fresh, app_id, device_id)
            pending = [r for r in rows if r["deviceId"] == device_id and r["status"] == "PENDING"]
            assert task["deviceCommands"] == sorted(pending, key=lambda r: r["creationTime"])
    finally:
        fresh.close()


def test_migration_leaves_the_layout_3_keys_alone_and_new_commands_join_the_old(svc, legacy):
    migration.migrate(svc.redis, svc.config.index_buckets)
    assert not migration.app_command_indexes(svc.redis)
    app_id = APPS[0]
    device_id = legacy[app_id][0]["deviceId"]
    assert "PENDING" not in svc.redis.hvals(keys.statuses(app_id, device_id))
    made = commands.create(svc, app_id, device_id, {"serviceId": "S", "method": "M"}, {})
    assert commands.get(svc, app_id, made["commandId"]) == made
    total, page = commands.query(svc, app_id, None, 0, 2**62, 0, 100)
    assert total == len(page) == len(legacy[app_id]) + 1
    assert made in page


def test_migrating_twice_changes_nothing_more(svc, legacy):
    buckets = svc.config.index_buckets
    migration.migrate(svc.redis, buckets)
    stored = {key: svc.redis.hgetall(key) for key in migration.document_keys(svc.redis)}
    assert migration.migrate(svc.redis, buckets) == 0
    assert {key: svc.redis.hgetall(key) for key in stored} == stored
    assert svc.redis.get(keys.layout()) == layout.expected(buckets)


def test_an_interrupted_migration_is_refused_then_finished_by_the_next_run(svc, legacy):
    buckets = svc.config.index_buckets

    def interrupt(rewritten: int) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C after the first device

    with pytest.raises(KeyboardInterrupt):
        migration.migrate(svc.redis, buckets, on_key=interrupt)
    with pytest.raises(layout.LayoutMismatch, match=r"interrupted.*devcmd migrate"):
        Services.from_config(svc.config)
    rewritten = migration.migrate(svc.redis, buckets)
    assert rewritten == len(APPS) * DEVICES * PER_DEVICE - PER_DEVICE
    for app_id, rows in legacy.items():
        assert [commands.get(svc, app_id, r["commandId"]) for r in rows] == rows


def test_devcmd_migrate_reports_what_it_did(svc, legacy, redis_url, redis_backend):
    if redis_backend == "cluster":
        pytest.skip("the command-line path is the same; the store functions run on the cluster")
    done = devcmd(redis_url, "migrate")
    assert done.returncode == 0, done.stderr
    assert f"{len(APPS) * DEVICES * PER_DEVICE} command documents rewritten" in done.stdout
    again = devcmd(redis_url, "migrate")
    assert again.returncode == 0, again.stderr
    assert " 0 command documents rewritten" in again.stdout


def strip_retention(svc: Services, app_id: str) -> None:
    """Make an application's devices look as a store written before retention left them: no
    finished lists, not on the retention index."""
    for device_id in svc.devices.ids(app_id):
        svc.redis.delete(keys.finished(app_id, device_id))
        svc.retention.unregister(app_id, device_id)


def finished_ids(svc: Services, app_id: str, device_id: str) -> list[str]:
    entries = svc.redis.lrange(keys.finished(app_id, device_id), 0, -1)
    return sorted(cid for entry in entries for cid in entry.split(" ", 1)[1].split(","))


def ended(rows: list[dict], device_id: str) -> list[str]:
    return sorted(
        r["commandId"]
        for r in rows
        if r["deviceId"] == device_id and r["status"] in migration.TERMINAL
    )


def test_migration_lists_the_ended_commands_no_finished_list_names_once(svc, legacy):
    strip_retention(svc, APPS[0])  # APPS[1] keeps the lists its scripts wrote
    migration.migrate(svc.redis, svc.config.index_buckets, now=1_900_000_000_000)
    for app_id, rows in legacy.items():
        for device_id in svc.devices.ids(app_id):
            assert ended(rows, device_id)  # the fixture ends some on every device
            assert finished_ids(svc, app_id, device_id) == ended(rows, device_id)
    device_id = svc.devices.ids(APPS[0])[0]
    head = svc.redis.lindex(keys.finished(APPS[0], device_id), 0)
    assert head.startswith("1900000000000 ")  # ended at the migration, kept a whole retention


def test_devcmd_migrate_puts_every_device_on_the_retention_index(
    svc, legacy, redis_url, redis_backend
):
    if redis_backend == "cluster":
        pytest.skip("the command-line path is the same; the store functions run on the cluster")
    for app_id in APPS:
        strip_retention(svc, app_id)
    retained = [keys.retention(b) for b in svc.buckets]
    assert sum(svc.redis.zcard(key) for key in retained) == 0
    for _ in range(2):  # twice: the same entries
        done = devcmd(redis_url, "migrate")
        assert done.returncode == 0, done.stderr
        assert f"{len(APPS) * DEVICES} devices on the retention index" in done.stdout
        members = {m for key in retained for m in svc.redis.zrange(key, 0, -1)}
        assert members == {f"{a}/{d}" for a in APPS for d in svc.devices.ids(a)}


def test_migrate_alone_puts_every_device_where_retention_visits_it(svc, legacy):
    """Called from code, without the command line, migrate() is enough: the devices of a store
    written before retention are visited and their ended commands go when due (those whose
    callback is still to be delivered stay until it settles)."""
    for app_id in APPS:
        strip_retention(svc, app_id)
    at = 1_900_000_000_000
    registered: list[int] = []
    migration.migrate(svc.redis, svc.config.index_buckets, now=at, on_registered=registered.append)
    assert registered == [len(APPS) * DEVICES]
    for app_id in APPS:
        for device_id in svc.devices.ids(app_id):
            notifications.flush(svc, app_id, device_id)  # as the workers drain the outboxes
    svc.config = svc.config.with_(command_retention=1.0)
    assert retention.forget_due(svc, now=at + 999)["commands"] == 0  # not due yet
    gone = [
        (app_id, row)
        for app_id, rows in legacy.items()
        for row in rows
        if row["status"] in migration.TERMINAL and not row["callbackUrl"]
    ]
    assert len(gone) == len(APPS) * DEVICES  # the fixture cancels one such command a device
    assert retention.forget_due(svc, now=at + 1000)["commands"] == len(gone)
    for app_id, rows in legacy.items():
        for row in rows:
            if (app_id, row) in gone:
                with pytest.raises(errors.CommandNotFound):
                    commands.get(svc, app_id, row["commandId"])
            else:
                assert commands.get(svc, app_id, row["commandId"]) == row
