"""Failover of the data store: a Redis Cluster of 3 masters with a replica each; the master
that owns a device's slot is killed (`kill -9`) while the device's revocation task sweeps. Its
replica is promoted, the task still ends SUCCESS with the exact count, and no command of its
scope is ever handed to the device after the task was accepted (REDIS_MIN_REPLICAS_ACK=1: the
fence was on a replica before the task was answered)."""

from __future__ import annotations

import threading
import time

import pytest
from redis import RedisError

from devcmd.config import Config
from devcmd.domain import auth, commands, devices, revocations, southbound
from devcmd.embedded_cluster import EmbeddedCluster
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.replication import NotReplicated

pytestmark = pytest.mark.integration
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
SCOPE = 3000


@pytest.fixture
def replicated_cluster(tmp_path):
    cluster = EmbeddedCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1000)
    yield cluster.start()
    cluster.stop()


def retrying(action, deadline: float):
    """Run `action` until it does not raise a Redis error (the cluster is failing over)."""
    while True:
        try:
            return action()
        except RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_killing_a_devices_master_mid_sweep_keeps_the_task_exact(replicated_cluster, redis_server):
    config = Config().with_(
        redis_url=replicated_cluster.url,
        celery_broker_url=redis_server.url,
        redis_min_replicas_ack=1,
        sweep_batch=20,
        sweep_step_seconds=0.05,
    )
    svc = Services.from_config(config)
    try:
        app_id = auth.create_application(svc, app_id="app-f", secret="s")["appId"]
        device_id = devices.register(svc, app_id, "n1", None, None)["deviceId"]
        for _ in range(SCOPE):
            commands.create(svc, app_id, device_id, COMMAND, {})
        task_id = revocations.open_task(svc, app_id, device_id)["taskId"]  # the 201
        owner = svc.redis.get_node_from_key(keys.device(app_id, device_id)).port
        master = next(m for m in replicated_cluster.masters if m.port == owner)
        deadline = time.monotonic() + 60
        handed: list[str] = []
        stop = threading.Event()

        def device() -> None:
            """The device polls for commands the whole time: it must never get one."""
            while not stop.is_set():
                try:
                    handed.extend(
                        c["commandId"] for c in southbound.fetch(svc, app_id, device_id, 10)
                    )
                except RedisError:
                    time.sleep(0.1)

        poller = threading.Thread(target=device)
        poller.start()
        first = revocations.sweep(svc, app_id, device_id, task_id)
        assert not first.done  # the kill lands mid-sweep
        master.kill()
        while not retrying(
            lambda: revocations.sweep(svc, app_id, device_id, task_id), deadline
        ).done:
            pass
        stop.set()
        poller.join()
        task = retrying(lambda: revocations.get(svc, app_id, task_id), deadline)
        assert (task["status"], int(task["cancelledCount"]), int(task["totalCount"])) == (
            "SUCCESS",
            SCOPE,
            SCOPE,
        )
        assert handed == []
        promoted = svc.redis.get_node_from_key(keys.device(app_id, device_id)).port
        assert promoted != owner
    finally:
        svc.close()


def test_without_the_replicas_asked_for_a_task_is_not_answered(svc, app_id, device_id):
    """REDIS_MIN_REPLICAS_ACK=1 on a server without replicas: opening a task fails with a
    storage error instead of answering as if it were safe."""
    commands.create(svc, app_id, device_id, COMMAND, {})
    svc.config = svc.config.with_(redis_min_replicas_ack=1, redis_replica_ack_timeout=0.1)
    for built in ("replicas", "revocations"):
        svc.__dict__.pop(built, None)  # built with the new settings
    with pytest.raises(NotReplicated, match="0 of 1 replicas"):
        revocations.open_task(svc, app_id, device_id)
