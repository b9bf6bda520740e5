"""End-to-end fixtures: real gunicorn, a real Celery worker and real HTTP callback receivers, all
on 127.0.0.1 and all against the session's real Redis server (flushed around each test).

On a failing test, every child process's output tail is added to the report.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from devcmd.config import Config
from devcmd.domain.auth import create_application
from devcmd.embedded import free_port
from devcmd.services import Services
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.processes import (
    PROCESSES,
    Process,
    child_env,
    start_beat,
    start_web,
    start_worker,
    wait_ready,
)
from tests.e2e.receiver import Receiver

CALLBACK_RETRY_SCHEDULE = "0.2,0.2,0.2"  # seconds: a failed callback is retried at once


@dataclass(frozen=True)
class Stack:
    base_url: str
    web: Process
    worker: Process


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach each child process's output tail to a failed test's report."""
    report = yield
    if report.failed:
        for process in item.stash.get(PROCESSES, []):
            report.sections.append((f"{process.name} output ({process.log_path})", process.tail()))
    return report


@pytest.fixture
def stack(request: pytest.FixtureRequest, redis_url: str, broker_url, tmp_path) -> Stack:
    """gunicorn (2 workers), one Celery worker and beat, up once `/readyz` answers 200 (with a
    separate broker when the data store is a cluster)."""
    port = free_port()
    broker = {"celery_broker_url": broker_url} if broker_url else {}
    web = start_web(port, child_env(redis_url, tmp_path / "home", **broker), tmp_path)
    worker_env = child_env(
        redis_url,
        tmp_path / "home",
        **broker,
        callback_retry_schedule=CALLBACK_RETRY_SCHEDULE,
        callback_breaker_cooldown=0.3,  # the flaky receiver fails every first attempt on purpose
    )
    worker = start_worker(worker_env, tmp_path)
    beat = start_beat(worker_env, tmp_path)
    processes = [web, worker, beat]
    request.node.stash[PROCESSES] = processes
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, processes)
        yield Stack(base_url, web, worker)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def application(redis_url: str, broker_url) -> dict[str, str]:
    """A fresh application created through the domain: {appId, secret, webhookSecret}."""
    svc = Services.from_config(Config().with_(redis_url=redis_url, celery_broker_url=broker_url))
    try:
        return create_application(svc, app_id=f"e2e-{secrets.token_hex(4)}", secret="e2e-secret")
    finally:
        svc.close()


@pytest.fixture
def oceanconnect(stack: Stack, application: dict[str, str]) -> OceanConnect:
    """A northbound client for `application`, not yet logged in."""
    client = OceanConnect(stack.base_url, application["appId"], application["secret"])
    yield client
    client.close()


@pytest.fixture
def receiver() -> Receiver:
    """A callback receiver that answers 204 to everything."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def flaky_receiver() -> Receiver:
    """A callback receiver that answers 500 to each notification's first attempt, then 204."""
    server = Receiver(fail_first=True).start()
    yield server
    server.stop()
