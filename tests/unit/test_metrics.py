"""`/metrics` after real calls: HTTP requests by route and status, revocation tasks, sweeps and
the service gauges read from Redis at scrape time (values parsed with prometheus_client)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from devcmd.domain import revocations
from devcmd.services import Services

TASKS = "/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks"
COMMANDS = "/iocm/app/cmd/v1.4.0/deviceCommands"


def scrape(client) -> dict[tuple[str, frozenset], float]:
    """Every sample of one scrape: (sample name, labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def queue_commands(client, headers, device_id: str, count: int) -> None:
    for _ in range(count):
        body = {"deviceId": device_id, "command": {"serviceId": "S", "method": "M", "paras": {}}}
        assert client.post(COMMANDS, json=body, headers=headers).status_code == 201


def test_requests_are_counted_by_route_and_status(client, headers, device_id) -> None:
    before = scrape(client)
    queue_commands(client, headers, device_id, 2)
    for command_id in ("a" * 32, "b" * 32):
        cancel = {"status": "CANCELED"}
        assert (
            client.put(f"{COMMANDS}/{command_id}", json=cancel, headers=headers).status_code == 404
        )
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "devcmd_http_requests_total"
    assert moved(total, method="POST", route=COMMANDS, status="201") == 2
    # The URL rule, not the path: both ids count as one route.
    assert moved(total, method="PUT", route=f"{COMMANDS}/<command_id>", status="404") == 2
    assert moved(total, method="GET", route="<unmatched>", status="404") == 1
    duration = "devcmd_http_request_duration_seconds_count"
    assert moved(duration, method="POST", route=COMMANDS) == 2


def test_a_task_and_its_sweep_move_their_counters_and_gauges(client, headers, device_id, svc):
    queue_commands(client, headers, device_id, 5)
    before = scrape(client)
    created = client.post(TASKS, json={"deviceId": device_id}, headers=headers)
    assert created.status_code == 201
    during = scrape(client)
    assert value(during, "devcmd_tasks_active") == value(before, "devcmd_tasks_active") + 1
    while not revocations.sweep(svc, "app-a", device_id, created.json["taskId"]).done:
        pass
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("devcmd_revocation_tasks_created_total") == 1
    assert moved("devcmd_revocation_tasks_finished_total", status="SUCCESS") == 1
    assert moved("devcmd_commands_revoked_total") == 5
    assert moved("devcmd_sweep_duration_seconds_count") >= 1
    assert moved("devcmd_tasks_active") == 0
    assert value(after, "devcmd_outboxes_dirty") >= 1  # the sweep's events wait for a flush


def test_queue_depths_and_workers_are_read_at_scrape_time(client, svc: Services) -> None:
    svc.redis.rpush("revocations", "a", "b", "c")
    svc.health.beat("w1", 10**13)
    samples = scrape(client)
    assert value(samples, "devcmd_queue_depth", queue="revocations") == 3
    assert value(samples, "devcmd_queue_depth", queue="callbacks") == 0
    assert value(samples, "devcmd_queue_limit", queue="callbacks") == 10_000
    assert value(samples, "devcmd_workers_alive") == 1
    assert value(samples, "devcmd_redis_up") == 1
