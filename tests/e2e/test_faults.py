"""Faults of the data store under real gunicorn, a real Celery worker and beat, on a Redis server
of the test's own: a restart and a stall (DEBUG SLEEP) in the middle of a revocation sweep.
Clients get 503 with Retry-After within the configured timeout, no process is restarted, and the
task accepted before the fault finishes after it with exact counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from devcmd.config import Config
from devcmd.domain import auth, commands, devices
from devcmd.embedded import free_port
from devcmd.services import Services
from tests.e2e.processes import (
    PROCESSES,
    child_env,
    start_beat,
    start_web,
    start_worker,
    wait_ready,
)

# REDIS_SOCKET_TIMEOUT / REDIS_CONNECT_TIMEOUT of every process here. A call answered within
# 3 of them took one (or a refused connect), not the 4 of a retry loop; the rest is room for a
# loaded machine, so a timeout is a whole second.
TIMEOUT = 1.0
SCOPE = 3000  # pending commands the sweep cancels
TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
DEVICE = "/iocm/app/dm/v1.4.0/devices/{}"
FINISHED_WITHIN = 90.0


@pytest.fixture
def stack(request, server, tmp_path) -> Iterator[str]:
    """gunicorn, a worker and beat on the test's own server, with short Redis timeouts and small
    sweep steps (the sweep is still running when the fault comes)."""
    settings = {
        "redis_socket_timeout": TIMEOUT,
        "redis_connect_timeout": TIMEOUT,
        "broker_connect_timeout": TIMEOUT,
        "sweep_batch": 10,
        "sweep_step_seconds": 0.01,
        "stall_seconds": 5,
    }
    env = child_env(server.url, tmp_path / "home", **settings)
    port = free_port()
    processes = [start_web(port, env, tmp_path), start_worker(env, tmp_path)]
    processes.append(start_beat(env, tmp_path))
    request.node.stash[PROCESSES] = processes
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, processes)
        yield base_url
    finally:
        for process in processes:
            process.stop()
    for process in processes:
        assert process.popen.returncode is not None


@pytest.fixture
def world(server) -> Iterator[dict]:
    """An application with a device holding SCOPE pending commands, and its headers."""
    svc = Services.from_config(Config().with_(redis_url=server.url))
    try:
        auth.create_application(svc, app_id="app-f", secret="secret-f")
        token = auth.login(svc, "app-f", "secret-f")["accessToken"]
        device_id = devices.register(svc, "app-f", "node-f", None, None)["deviceId"]
        command = {"serviceId": "s", "method": "m", "paras": {}}
        for _ in range(SCOPE):
            commands.create(svc, "app-f", device_id, command, {})
    finally:
        svc.close()
    headers = {"app_key": "app-f", "Authorization": f"Bearer {token}"}
    return {"headers": headers, "deviceId": device_id}


def open_task(base_url: str, world: dict) -> str:
    """Open the task and check that its sweep is still to finish (the fault comes next)."""
    reply = requests.post(
        base_url + TASKS, json={"deviceId": world["deviceId"]}, headers=world["headers"], timeout=10
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["totalCount"] == SCOPE
    task_id = reply.json()["taskId"]
    assert task_state(base_url, world, task_id)["status"] in ("WAITING", "RUNNING")
    return task_id


def task_state(base_url: str, world: dict, task_id: str) -> dict | None:
    """The task as the API reports it, or None while the API answers 503."""
    reply = requests.get(
        f"{base_url}{TASKS}?taskId={task_id}", headers=world["headers"], timeout=10
    )
    if reply.status_code == 503:
        return None
    assert reply.status_code == 200, reply.text
    return reply.json()["data"][0]


def wait_finished(base_url: str, world: dict, task_id: str) -> dict:
    deadline = time.monotonic() + FINISHED_WITHIN
    while time.monotonic() < deadline:
        task = task_state(base_url, world, task_id)
        if task and task["status"] not in ("WAITING", "RUNNING"):
            return task
        time.sleep(0.2)
    pytest.fail(f"task {task_id} not finished within {FINISHED_WITHIN} s")


def wait_asleep(port: int) -> None:
    """Return once the server at `port` no longer answers a PING within a tenth of a second."""
    probe = redis.Redis(port=port, socket_timeout=0.1, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                probe.ping()
            except redis.TimeoutError:
                return
            assert time.monotonic() < deadline, "the server did not fall asleep"
            time.sleep(0.02)
    finally:
        probe.close()


def assert_503_within_timeout(base_url: str, world: dict) -> None:
    started = time.monotonic()
    reply = requests.get(
        base_url + DEVICE.format(world["deviceId"]), headers=world["headers"], timeout=30
    )
    took = time.monotonic() - started
    assert reply.status_code == 503, reply.text
    assert reply.json()["error_code"] == "100503"
    assert int(reply.headers["Retry-After"]) > 0
    assert took < 3 * TIMEOUT, took  # one timeout (or a refused connect), no retry loop


def test_a_redis_restart_mid_sweep_answers_503_meanwhile_and_the_task_finishes(
    stack,
    server,
    world,
) -> None:
    task_id = open_task(stack, world)
    server.stop()  # SIGTERM: Redis writes its AOF and exits, as in a restart
    assert_503_within_timeout(stack, world)
    time.sleep(2)  # the worker and beat meet the outage too
    server.start()
    task = wait_finished(stack, world, task_id)
    assert task["status"] == "SUCCESS"
    assert task["cancelledCount"] == task["totalCount"] == SCOPE
    remaining = requests.get(
        stack + DEVICE.format(world["deviceId"]), headers=world["headers"], timeout=10
    )
    assert remaining.json()["pendingCommands"] == 0


def test_a_stalled_redis_mid_sweep_answers_503_meanwhile_and_the_task_finishes(
    stack,
    server,
    world,
) -> None:
    stall = 6 * TIMEOUT
    task_id = open_task(stack, world)
    admin = redis.Redis(port=server.port)
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", stall))
    sleeper.start()
    wait_asleep(server.port)
    started = time.monotonic()
    assert_503_within_timeout(stack, world)
    assert time.monotonic() - started < stall / 2
    sleeper.join()
    admin.close()
    task = wait_finished(stack, world, task_id)
    assert task["status"] == "SUCCESS"
    assert task["cancelledCount"] == task["totalCount"] == SCOPE  # no batch counted twice
