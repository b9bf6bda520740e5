"""bench.http's reference call: the production application as `devcmd run` serves it, plus one
route that answers as `/healthz` does after one PING on the web process's own Redis pool."""

from __future__ import annotations

import requests
from redis import Redis

from bench import http


def pings(redis: Redis) -> int:
    return redis.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)


def test_the_reference_route_answers_as_healthz_after_one_ping(tmp_path, redis_url) -> None:
    redis = Redis.from_url(redis_url)
    log = tmp_path / "web.log"
    with http.web(redis_url, http.REPO, log, reference_in=tmp_path) as (base, _):
        bare = requests.get(f"{base}{http.BARE.path}", timeout=10)
        before = pings(redis)
        answers = [requests.get(f"{base}{http.REFERENCE.path}", timeout=10) for _ in range(20)]
        sent = pings(redis) - before
        healthz_before = pings(redis)
        for _ in range(20):
            assert requests.get(f"{base}{http.BARE.path}", timeout=10).ok
        healthz_sent = pings(redis) - healthz_before
    assert [a.status_code for a in answers] == [200] * 20
    assert {a.json() == bare.json() for a in answers} == {True}
    # One PING a request; a few more may come from the web process's own background
    # connections (a subscriber's and a pooled connection's health checks), never one a call.
    assert 20 <= sent <= 26
    assert healthz_sent <= 6


def test_the_production_application_has_no_reference_route(tmp_path, redis_url) -> None:
    with http.web(redis_url, http.REPO, tmp_path / "web.log") as (base, _):
        answer = requests.get(f"{base}{http.REFERENCE.path}", timeout=10)
    assert answer.status_code == 404
