"""The broker behind Redis Sentinel (a primary, a replica, three Sentinels), with real Celery
worker and beat processes: readiness and backpressure read the queues through Sentinel, and a
`kill -9` of the broker's primary while revocation tasks are accepted and swept loses none of
them: every task that was accepted reaches a final status."""

from __future__ import annotations

import time

import pytest

from app import create_app
from devcmd.config import Config
from devcmd.domain import auth, commands, devices, health, revocations
from devcmd.embedded_cluster import EmbeddedSentinelSet
from devcmd.services import Services
from tests.e2e.processes import PROCESSES, child_env, start_beat, start_worker

pytestmark = pytest.mark.e2e
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {}}
FINAL = {"SUCCESS", "PART_SUCCESS", "FAILED"}


@pytest.fixture
def sentinel_broker(tmp_path):
    servers = EmbeddedSentinelSet(tmp_path / "broker").start()
    yield servers
    servers.stop()


@pytest.fixture
def svc(redis_url, sentinel_broker):
    config = Config().with_(redis_url=redis_url, celery_broker_url=sentinel_broker.url)
    services = Services.from_config(config)
    yield services
    services.close()


def open_tasks(svc: Services, app_id: str, count: int) -> list[tuple[str, str]]:
    """`count` devices with 20 commands each and a revocation task on each (each call is what
    a 201 answers); returns (deviceId, taskId) pairs."""
    opened = []
    for i in range(count):
        device_id = devices.register(svc, app_id, f"n-{time.monotonic_ns()}-{i}", None, None)
        device_id = device_id["deviceId"]
        for _ in range(20):
            commands.create(svc, app_id, device_id, COMMAND, {})
        opened.append((device_id, revocations.open_task(svc, app_id, device_id)["taskId"]))
    return opened


def test_readiness_and_queue_depths_are_read_through_sentinel(svc, sentinel_broker):
    app_id = auth.create_application(svc, app_id="app-s", secret="s")["appId"]
    open_tasks(svc, app_id, 2)
    backlog = health.queue_backlog(svc)
    assert backlog["revocations"][0] == 2
    svc.health.beat("revocations@host", int(time.time() * 1000))
    ready = create_app(services=svc).test_client().get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"]["queues"]["revocations"]["depth"] == 2
    svc.config = svc.config.with_(revocation_queue_limit=1)
    full = create_app(services=svc).test_client().get("/readyz")
    assert full.status_code == 503
    assert full.json["checks"]["queues"]["ok"] is False


def test_killing_the_broker_primary_loses_no_accepted_task(
    request, svc, sentinel_broker, redis_url, tmp_path
):
    app_id = auth.create_application(svc, app_id="app-f", secret="s")["appId"]
    env = child_env(
        redis_url,
        tmp_path / "home",
        celery_broker_url=sentinel_broker.url,
        stall_seconds=2,
        sweep_batch=5,
    )
    processes = [start_worker(env, tmp_path), start_beat(env, tmp_path)]
    request.node.stash[PROCESSES] = processes
    try:
        before = open_tasks(svc, app_id, 6)
        old_master = sentinel_broker.master_port()
        sentinel_broker.primary.kill()
        deadline = time.monotonic() + 30
        while sentinel_broker.master_port() in (old_master, None):
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.2)
        after = open_tasks(svc, app_id, 6)  # accepted through the promoted replica
        deadline = time.monotonic() + 90
        pending = before + after
        while pending and time.monotonic() < deadline:
            pending = [
                (d, t)
                for d, t in pending
                if svc.revocations.get(app_id, d, t).get("status") not in FINAL
            ]
            time.sleep(0.5)
        assert pending == [], [svc.revocations.get(app_id, d, t) for d, t in pending]
        for device_id, task_id in before + after:
            task = svc.revocations.get(app_id, device_id, task_id)
            assert (task["status"], task["cancelledCount"]) == ("SUCCESS", "20")
        assert all(p.alive() for p in processes)
    finally:
        for process in processes:
            process.stop()
