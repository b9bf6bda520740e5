"""REDIS_MIN_REPLICAS_ACK on every answer that promises a command's fate, not only on a
revocation task's: a new command, a single cancel, commands handed to a device, a device's ack
and result wait until that many replicas of the device's master hold the write; with fewer in
time the caller gets the storage error (503), never an answer a failover could take back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from redis import Redis

from app import create_app
from devcmd.config import Config
from devcmd.domain import auth, commands, delivery, devices, health, notifications, southbound
from devcmd.embedded import RedisServer, free_port
from devcmd.embedded_cluster import EmbeddedCluster, ReplicaServer
from devcmd.services import Services
from devcmd.store import keys
from devcmd.store.replication import NotReplicated
from tests.integration.test_notifications import queued_refs

pytestmark = pytest.mark.integration
COMMAND = {"serviceId": "Light", "method": "ON", "paras": {"level": 1}}


def strict(config: Config, timeout: float = 0.1) -> Services:
    return Services.from_config(
        config.with_(redis_min_replicas_ack=1, redis_replica_ack_timeout=timeout)
    )


def create(svc, app_id, device_id) -> None:
    commands.create(svc, app_id, device_id, COMMAND, {})


def cancel(svc, app_id, device_id) -> None:
    made = commands.create(svc.loose, app_id, device_id, COMMAND, {})
    commands.cancel(svc, app_id, made["commandId"])


def fetch(svc, app_id, device_id) -> None:
    commands.create(svc.loose, app_id, device_id, COMMAND, {})
    southbound.fetch(svc, app_id, device_id, 10)


def ack(svc, app_id, device_id) -> None:
    commands.create(svc.loose, app_id, device_id, COMMAND, {})
    (sent,) = southbound.fetch(svc.loose, app_id, device_id, 10)
    southbound.ack(svc, app_id, device_id, sent["commandId"])


def finish(svc, app_id, device_id) -> None:
    commands.create(svc.loose, app_id, device_id, COMMAND, {})
    (sent,) = southbound.fetch(svc.loose, app_id, device_id, 10)
    southbound.finish(svc, app_id, device_id, sent["commandId"], "SUCCESSFUL", {"ok": 1})


CALLS: dict[str, Callable] = {
    "create": create,
    "cancel": cancel,
    "fetch": fetch,
    "ack": ack,
    "finish": finish,
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_without_the_replicas_asked_for_no_fate_is_answered(svc, app_id, device_id, call):
    """A server without replicas and REDIS_MIN_REPLICAS_ACK=1: each call raises the storage
    error instead of answering as if its write were safe."""
    held = strict(svc.config)
    held.loose = svc  # the steps before the call under test answer without waiting
    try:
        with pytest.raises(NotReplicated, match="0 of 1 replicas"):
            call(held, app_id, device_id)
    finally:
        held.close()


def test_a_device_polling_an_empty_queue_is_not_held(svc, app_id, device_id):
    """Nothing handed out, nothing promised: an empty fetch answers without waiting."""
    held = strict(svc.config)
    try:
        assert southbound.fetch(held, app_id, device_id, 10) == []
    finally:
        held.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/iocm/app/cmd/v1.4.0/deviceCommands", {"command": COMMAND}),
        ("/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks", {}),
    ],
    ids=["create", "open task"],
)
def test_the_api_answers_the_storage_error(svc, app_id, device_id, headers, path, body):
    """A 503 in the documented envelope, with Retry-After (a task's was a 500 before)."""
    commands.create(svc, app_id, device_id, COMMAND, {})
    held = strict(svc.config)
    try:
        client = create_app(services=held).test_client()
        answer = client.post(path, json={"deviceId": device_id, **body}, headers=headers)
    finally:
        held.close()
    assert answer.status_code == 503
    assert answer.get_json()["error_code"] == "100503"
    assert int(answer.headers["Retry-After"]) > 0


@pytest.fixture
def primary_and_replica(tmp_path):
    primary = RedisServer(tmp_path / "primary", free_port()).start()
    replica = ReplicaServer(tmp_path / "replica", free_port(), primary.port).start()
    with Redis(port=replica.port) as client:
        while client.info("replication").get("master_link_status") != "up":
            pass
    yield primary, replica
    replica.stop()
    primary.stop()


@pytest.fixture
def replicated_cluster(tmp_path):
    cluster = EmbeddedCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1000)
    yield cluster.start()
    cluster.stop()


def statuses_on_replica(replica_port: int, app_id: str, device_id: str) -> list[bytes]:
    with Redis(port=replica_port) as replica:
        replica.execute_command("READONLY")
        return sorted(replica.hvals(keys.statuses(app_id, device_id)))


def pending_on_replica(replica_port: int, app_id: str, device_id: str) -> int:
    with Redis(port=replica_port) as replica:
        replica.execute_command("READONLY")
        return replica.zcard(keys.pending(app_id, device_id))


def run_every_call_against_replicas(config: Config, replica_of: Callable[[Services, str], int]):
    """Each call answers with a replica present, and at the moment of its answer the replica of
    the device's master holds the status it promised."""
    loose = Services.from_config(config)
    held = strict(config, timeout=5.0)
    held.loose = loose
    try:
        app_id = auth.create_application(loose, app_id="app-r", secret="s")["appId"]
        device_id = devices.register(loose, app_id, "n1", None, None)["deviceId"]
        replica = replica_of(loose, keys.device(app_id, device_id))
        commands.create(held, app_id, device_id, COMMAND, {})
        assert pending_on_replica(replica, app_id, device_id) == 1
        made = commands.create(loose, app_id, device_id, COMMAND, {})
        commands.cancel(held, app_id, made["commandId"])
        assert b"CANCELED" in statuses_on_replica(replica, app_id, device_id)
        handed = southbound.fetch(held, app_id, device_id, 10)
        assert len(handed) == 1
        assert b"SENT" in statuses_on_replica(replica, app_id, device_id)
        southbound.ack(held, app_id, device_id, handed[0]["commandId"])
        assert b"DELIVERED" in statuses_on_replica(replica, app_id, device_id)
        southbound.finish(held, app_id, device_id, handed[0]["commandId"], "SUCCESSFUL", {})
        assert statuses_on_replica(replica, app_id, device_id) == [b"CANCELED", b"SUCCESSFUL"]
    finally:
        held.close()
        loose.close()


def test_with_a_replica_every_call_answers_once_it_holds_the_write(primary_and_replica):
    primary, replica = primary_and_replica
    run_every_call_against_replicas(
        Config().with_(redis_url=primary.url), lambda svc, key: replica.port
    )


def test_on_a_cluster_each_call_waits_on_its_devices_master(replicated_cluster, redis_server):
    def replica_of(svc: Services, key: str) -> int:
        owner = svc.redis.get_node_from_key(key).port
        for replica in replicated_cluster.replicas:
            with Redis(port=replica.port) as client:
                if client.info("replication")["master_port"] == owner:
                    return replica.port
        raise AssertionError(f"no replica of {owner}")

    config = Config().with_(redis_url=replicated_cluster.url, celery_broker_url=redis_server.url)
    run_every_call_against_replicas(config, replica_of)


def test_readiness_fails_without_the_replicas_asked_for(svc):
    """The store check names the missing replicas instead of sending traffic that every
    promise would refuse; without the setting, the same server is ready."""
    assert health.readiness(svc)[1]["redis"]["ok"]
    held = strict(svc.config)
    try:
        check = health.readiness(held)[1]["redis"]
    finally:
        held.close()
    assert (check["ok"], check["replicas"]) == (False, 0)
    assert "REDIS_MIN_REPLICAS_ACK asks for 1" in check["error"]


def test_readiness_passes_with_a_replica_connected(primary_and_replica):
    primary, _ = primary_and_replica
    held = strict(Config().with_(redis_url=primary.url))
    try:
        check = health.readiness(held)[1]["redis"]
    finally:
        held.close()
    assert (check["ok"], check["replicas"]) == (True, 1)


def test_readiness_checks_the_replicas_of_every_master(replicated_cluster, redis_server):
    """Each master of a cluster is held to the setting: one that lost its replica fails."""
    config = Config().with_(redis_url=replicated_cluster.url, celery_broker_url=redis_server.url)
    held = strict(config)
    try:
        ready = health.readiness(held)[1]["redis"]
        replicated_cluster.replicas[0].kill()  # its master is left with none
        deadline = time.monotonic() + 10
        while health.readiness(held)[1]["redis"]["ok"] and time.monotonic() < deadline:
            time.sleep(0.1)  # until the master notices its replica's link is gone
        after = health.readiness(held)[1]["redis"]
    finally:
        held.close()
    assert ready["ok"]
    assert {m["replicas"] for m in ready["masters"].values()} == {1}
    assert not after["ok"]
    assert sorted(m["replicas"] for m in after["masters"].values()) == [0, 1, 1]


def test_no_callback_leaves_before_the_replicas_hold_its_event(svc, app_id, device_id, receiver):
    """A delivery task without the replicas asked for fails (Celery retries it; the records
    stay leased) and the receiver hears nothing; the same refs go out once it may."""
    url = f"http://127.0.0.1:{receiver.server_port}/cb"
    made = commands.create(svc, app_id, device_id, COMMAND, {"callbackUrl": url})
    commands.cancel(svc, app_id, made["commandId"])
    notifications.flush(svc, app_id, device_id)
    refs = queued_refs(svc)
    assert len(refs) == 1
    held = strict(svc.config)
    sender = delivery.Sender(concurrency=2)
    try:
        with pytest.raises(NotReplicated):
            delivery.deliver(held, sender, refs)
        assert receiver.received == []
        assert delivery.deliver(svc, sender, refs) == {"postponed": 0, "delivered": 1}
    finally:
        sender.close()
        held.close()
    assert [h["webhook-id"] for h, _ in receiver.received] == [f"msg_{made['commandId']}_CANCELED"]
