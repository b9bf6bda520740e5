"""Observability on a real Redis and real processes: the request id rides in the Celery message
headers, queue depths read the broker's lists, callback attempts are counted, and two processes
writing one PROMETHEUS_MULTIPROC_DIR add up in one scrape."""

from __future__ import annotations

import json
import subprocess
import sys

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from devcmd import jobs, logs, scrape
from devcmd.services import Services
from tests.integration.test_notifications import cancelled_with_callbacks, deliver_queued


def published(svc, queue: str) -> list[dict]:
    """The Celery messages waiting in `queue`, oldest first."""
    return [json.loads(raw) for raw in reversed(svc.redis.lrange(queue, 0, -1))]


def test_a_task_sent_within_a_request_carries_its_request_id(svc) -> None:
    with logs.bound(request_id="rid-publish"):
        svc.broker.sweep("app-a", "dev-1", "task-1")
    svc.broker.sweep("app-a", "dev-1", "task-2")  # outside any request: no id
    first, second = published(svc, jobs.QUEUE_REVOCATIONS)
    assert first["headers"][jobs.REQUEST_ID_HEADER] == "rid-publish"
    assert jobs.REQUEST_ID_HEADER not in second["headers"]


def test_queue_depths_count_every_priority_list_of_the_broker(svc) -> None:
    assert jobs.queue_depths(svc.broker_redis) == {"revocations": 0, "callbacks": 0}
    svc.broker.sweep("app-a", "dev-1", "task-1")
    svc.broker.celery.send_task(jobs.SWEEP, args=["a", "d", "t"], priority=9)
    svc.broker.deliver([["app-a", "dev-1", "msg_1_CANCELED"]])
    assert len(svc.redis.lrange(jobs.QUEUE_REVOCATIONS, 0, -1)) == 1  # one went elsewhere
    assert jobs.queue_depths(svc.broker_redis) == {"revocations": 2, "callbacks": 1}


def test_callback_attempts_are_counted_by_outcome(svc, app_id, device_id, receiver) -> None:
    svc.config = svc.config.with_(callback_retry_schedule="5")
    receiver.statuses[:] = [500, 204, 204]
    names = [("delivered", "attempts"), ("retrying", "attempts"), (None, "duration")]
    before = [counted(*name) for name in names]
    cancelled_with_callbacks(svc, app_id, device_id, receiver.url, 3)
    deliver_queued(svc)
    moved = [counted(*name) - was for name, was in zip(names, before, strict=True)]
    assert moved == [2, 1, 3]


def counted(outcome: str | None, what: str) -> float:
    """This process's count of callback attempts with `outcome`, or of timed POSTs."""
    if what == "attempts":
        name, labels = "devcmd_callback_attempts_total", {"outcome": outcome}
    else:
        name, labels = "devcmd_callback_duration_seconds_count", {}
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sample(family, name: str) -> float:
    return next(s.value for s in family.samples if s.name == name)


WRITER = """
import sys
from devcmd import metrics
metrics.COMMANDS_REVOKED.inc(int(sys.argv[1]))
metrics.HTTP_REQUESTS.labels("GET", "/healthz", "200").inc(int(sys.argv[1]))
"""


def test_two_processes_writing_one_directory_add_up_in_one_scrape(svc, tmp_path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", WRITER, str(count)], env=env, check=True)
    config = svc.config.with_(prometheus_multiproc_dir=str(tmp_path))
    scraped = scrape.exposition(Services(config, svc.redis, svc.broker))
    families = {f.name: f for f in text_string_to_metric_families(scraped.decode())}
    assert sample(families["devcmd_commands_revoked"], "devcmd_commands_revoked_total") == 7
    healthz = families["devcmd_http_requests"].samples
    assert [(s.labels["route"], s.value) for s in healthz] == [("/healthz", 7)]
    assert sample(families["devcmd_redis_up"], "devcmd_redis_up") == 1


def request_labels(client) -> set[tuple[str, str]]:
    """The (method, route) label pairs of the request counter and duration histogram in a scrape
    of `/metrics`."""
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return {
        (s.labels["method"], s.labels["route"])
        for f in families
        if f.name in {"devcmd_http_requests", "devcmd_http_request_duration_seconds"}
        for s in f.samples
    }


def test_odd_methods_and_unmatched_paths_add_a_bounded_number_of_series(svc) -> None:
    client = create_app(services=svc).test_client()
    before = request_labels(client)
    for n in range(40):  # each would be a series of its own if labels took what clients send
        client.open(f"/nowhere/{n}", method=f"FOO{n}")
        client.open("/healthz", method=f"BAR{n}")  # 405: no URL rule matched this method
        client.get(f"/random/path/{n}")
    added = request_labels(client) - before
    assert added <= {("other", "<unmatched>"), ("GET", "<unmatched>"), ("GET", "/metrics")}
