"""Request ids and metrics across real processes: a request's `X-Request-Id` reaches the
worker's JSON log lines for the sweep it triggered, gunicorn's two workers are counted together
in one scrape, and a worker with WORKER_METRICS_PORT serves its own."""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devcmd.embedded import free_port
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.processes import PROCESSES, child_env, start_worker
from tests.e2e.receiver import Receiver

pytestmark = pytest.mark.e2e


def json_lines(path: Path) -> list[dict]:
    """The JSON log lines of a process's output (Celery's banner and the like are skipped)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def wait_for_lines(path: Path, matches, timeout: float = 15.0, at_least: int = 1) -> list[dict]:
    """Log lines of `path` for which `matches(line)` holds, waiting until there are `at_least`."""
    deadline = time.monotonic() + timeout
    while len(found := [line for line in json_lines(path) if matches(line)]) < at_least:
        assert time.monotonic() < deadline, path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    return found


def test_request_id_reaches_the_workers_log_lines_of_the_sweep_it_triggered(
    stack, oceanconnect: OceanConnect, receiver: Receiver
) -> None:
    assert oceanconnect.login().status_code == 200
    device_id = oceanconnect.register_device("meter-traced").json()["deviceId"]
    created_ids = []
    for level in range(3):
        created = oceanconnect.create_command(device_id, "SET", {"level": level}, receiver.url())
        assert created.status_code == 201, created.text
        created_ids.append(created.json()["commandId"])
    request_id = f"abc-{secrets.token_hex(8)}"

    response = oceanconnect.http.post(
        stack.base_url + "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks",
        json={"deviceId": device_id},
        headers={"X-Request-Id": request_id},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-Id"] == request_id
    task_id = response.json()["taskId"]
    assert oceanconnect.wait_cancel_task(task_id)["status"] == "SUCCESS"

    sweep = wait_for_lines(
        stack.worker.log_path, lambda line: line.get("task_name") == "devcmd.revocations.sweep"
    )
    assert [line["request_id"] for line in sweep] == [request_id]
    assert sweep[0]["task_id"] == task_id
    assert (sweep[0]["app_id"], sweep[0]["device_id"]) == (oceanconnect.app_id, device_id)
    assert sweep[0]["celery_task_id"]
    # The sweep's flush enqueues the delivery of its callbacks: the request id goes along.
    receiver.wait_for_accepted(set(created_ids), timeout=30)
    deliver = wait_for_lines(
        stack.worker.log_path,
        lambda line: line.get("task_name") == "devcmd.notifications.deliver",
    )
    assert {line.get("request_id") for line in deliver} == {request_id}
    access = wait_for_lines(stack.web.log_path, lambda line: line.get("request_id") == request_id)
    assert [(a["route"], a["status"], a["app_id"]) for a in access] == [
        ("/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks", 201, oceanconnect.app_id)
    ]


def test_one_scrape_counts_the_requests_of_both_gunicorn_workers(stack) -> None:
    # Which worker accepts a connection is the kernel's choice; on a loaded machine one can take
    # a whole round, so rounds go on until both have answered (the proof needs both).
    requests_sent, answered_by = 0, set()
    for _ in range(30):
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda _: requests.get(f"{stack.base_url}/healthz", timeout=5).status_code,
                    range(60),
                )
            )
        assert statuses == [200] * 60
        requests_sent += 60
        logged = wait_for_lines(
            stack.web.log_path,
            lambda line: line.get("route") == "/healthz",
            at_least=requests_sent,
        )
        answered_by = {line["process"] for line in logged}
        if len(answered_by) == 2:
            break
    assert len(answered_by) == 2, "both gunicorn workers must have answered for this to prove it"

    for _ in range(4):  # whichever worker answers the scrape counts every worker's requests
        scrape = requests.get(f"{stack.base_url}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert healthz_count(scrape.text) == requests_sent


def healthz_count(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        if family.name == "devcmd_http_requests":
            return sum(
                sample.value
                for sample in family.samples
                if sample.name.endswith("_total") and sample.labels["route"] == "/healthz"
            )
    return 0.0


def test_a_worker_with_a_metrics_port_serves_its_directory(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    """A worker machine without a web process (docker-compose's worker containers)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = child_env(
        redis_url, tmp_path / "home", prometheus_multiproc_dir=metrics_dir, worker_metrics_port=port
    )
    worker = start_worker(env, tmp_path)
    request.node.stash[PROCESSES] = [worker]
    try:
        families = scrape_when_up(f"http://127.0.0.1:{port}/metrics", worker)
    finally:
        worker.stop()
    assert "devcmd_commands_revoked" in families
    assert "devcmd_sweep_duration_seconds" in families
    # Only this machine's processes: the Redis-wide gauges come from the web's /metrics.
    assert "devcmd_queue_depth" not in families


def scrape_when_up(url: str, process, timeout: float = 30.0) -> set[str]:
    """The metric family names at `url`, once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.alive(), process.tail()
        try:
            text = requests.get(url, timeout=1).text
        except requests.RequestException:
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.2)
            continue
        return {family.name for family in text_string_to_metric_families(text)}
