"""Sharded global indexes and the recorded key layout, on a single Redis and on the cluster."""

from __future__ import annotations

import base64
import json
import time

import pytest

from app import create_app
from devcmd import jobs
from devcmd.domain import commands, devices, revocations, southbound
from devcmd.services import Services
from devcmd.store import keys, layout
from tests import backends

pytestmark = [pytest.mark.integration, pytest.mark.backends(*backends.CLUSTERED)]
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}


def test_one_applications_devices_fill_every_bucket_and_every_master(svc, app_id, redis_backend):
    """Timers and active tasks of 64 devices land in their own buckets; a tick of one bucket
    sees only that bucket's devices, and all buckets together see every device."""
    device_ids = [devices.register(svc, app_id, f"n{i}", None, None)["deviceId"] for i in range(64)]
    for device_id in device_ids:
        commands.create(svc, app_id, device_id, COMMAND, {"expireTime": 1})
        revocations.open_task(svc, app_id, device_id)
    used = {keys.bucket(d, svc.config.index_buckets) for d in device_ids}
    assert len(used) > len(svc.buckets) // 2  # random ids: 64 of them miss a bucket or two
    sizes = [svc.redis.zcard(keys.active_tasks(b)) for b in svc.buckets]
    assert sum(sizes) == 64
    assert svc.health.backlog()["tasks_active"] == 64
    one = next(iter(used))
    mine = [d for d in device_ids if keys.bucket(d, svc.config.index_buckets) == one]
    later = 10**13
    assert sorted(d for _, d in svc.southbound.timers.due(one, later, 1000)) == sorted(mine)
    if redis_backend == "cluster":
        per_master = [
            len(node.redis_connection.keys("dc:{b*")) for node in svc.redis.get_primaries()
        ]
        assert all(count > 0 for count in per_master), per_master


def test_beat_fans_out_one_job_per_bucket(svc):
    assert svc.broker.fan_out(jobs.TICK, svc.buckets) == svc.config.index_buckets
    queued = [json.loads(raw) for raw in svc.broker_redis.lrange("revocations", 0, -1)]
    assert {m["headers"]["task"] for m in queued} == {jobs.TICK}
    buckets = sorted(json.loads(base64.b64decode(m["body"]))[0][0] for m in queued)
    assert buckets == list(svc.buckets)


def test_a_tick_over_all_buckets_expires_every_device(svc, app_id):
    device_ids = [devices.register(svc, app_id, f"n{i}", None, None)["deviceId"] for i in range(20)]
    created = [
        commands.create(svc, app_id, d, COMMAND, {"expireTime": 1})["commandId"] for d in device_ids
    ]
    time.sleep(1.1)
    assert southbound.tick(svc) == 20
    assert {commands.get(svc, app_id, c)["status"] for c in created} == {"EXPIRED"}


def test_a_store_of_another_layout_is_refused(svc, redis_url, broker_url):
    config = svc.config.with_(index_buckets=svc.config.index_buckets * 2)
    with pytest.raises(layout.LayoutMismatch, match="INDEX_BUCKETS=16"):
        Services.from_config(config)
    svc.redis.delete(keys.layout())
    svc.redis.zadd(layout.LEGACY_KEYS[0], {"a/b": 1})  # written by a devcmd before the buckets
    with pytest.raises(layout.LayoutMismatch, match="key layout 1"):
        Services.from_config(svc.config)


def test_readiness_reports_every_master_of_a_cluster(svc, redis_backend):
    checks = create_app(services=svc).test_client().get("/readyz").json["checks"]
    assert checks["redis"]["ok"] is True
    if redis_backend == "cluster":
        masters = checks["redis"]["masters"]
        assert len(masters) == 3
        assert all(master["ok"] for master in masters.values())
    else:
        assert "masters" not in checks["redis"]
