"""A dead process's metrics files are folded into one archive file per kind: every count is
kept, scrapes racing a fold never count a process twice or not at all, and gunicorn workers
recycled every few requests leave no files behind."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench import http
from devcmd import metrics_files

pytestmark = pytest.mark.integration

WRITER = """
import os, sys
from devcmd import metrics
count = int(sys.argv[1])
metrics.COMMANDS_REVOKED.inc(count)
metrics.HTTP_REQUESTS.labels("GET", "/healthz", "200").inc(count)
metrics.HTTP_REQUESTS.labels("POST", "/other", "201").inc(1)
for n in range(count):
    metrics.HTTP_DURATION.labels("GET", "/healthz").observe(0.002 * n)
print(os.getpid())
"""


def write(directory: Path, count: int) -> int:
    """A process that counts into `directory` and exits; returns its pid."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(count)], env=env, check=True, capture_output=True
    )
    return int(done.stdout)


def scraped(directory: Path) -> dict[tuple[str, tuple], float]:
    """(sample name, labels) -> value of a scrape of `directory`."""
    registry = CollectorRegistry()
    metrics_files.Collector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def db_files(directory: Path) -> list[str]:
    return sorted(os.path.basename(f) for f in glob.glob(str(directory / "*.db")))


def test_a_folded_process_keeps_every_count_in_one_file_per_kind(tmp_path) -> None:
    pids = [write(tmp_path, count) for count in (3, 4, 5)]
    before = scraped(tmp_path)
    assert before["devcmd_commands_revoked_total", ()] == 12
    assert len(db_files(tmp_path)) == 6  # a counter and a histogram file per process
    for pid in pids:
        assert metrics_files.fold(pid, str(tmp_path)) == 2
    assert db_files(tmp_path) == ["counter_archive.db", "histogram_archive.db"]
    assert scraped(tmp_path) == pytest.approx(before)  # sums of floats, in another order
    write(tmp_path, 2)  # a live process beside the archive: both count
    after = scraped(tmp_path)
    assert after["devcmd_commands_revoked_total", ()] == 14
    count = "devcmd_http_request_duration_seconds_count"
    assert after[count, (("method", "GET"), ("route", "/healthz"))] == 14
    assert metrics_files.fold(12345678, str(tmp_path)) == 0  # nothing of it: nothing to do


def test_a_scrape_racing_folds_counts_each_process_once(tmp_path) -> None:
    pids = [write(tmp_path, 1) for _ in range(12)]
    seen: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            seen.append(scraped(tmp_path)["devcmd_commands_revoked_total", ()])

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for pid in pids:
            metrics_files.fold(pid, str(tmp_path))
            time.sleep(0.01)
    finally:
        done.set()
        scraper.join()
    assert len(seen) > 12
    assert set(seen) == {12.0}
    assert db_files(tmp_path) == ["counter_archive.db", "histogram_archive.db"]


def test_gunicorn_workers_recycled_every_few_requests_leave_no_files(tmp_path, redis_url) -> None:
    """gunicorn as `devcmd run` starts it, its workers recycled every 10 requests: after 120
    requests only the live workers' files and the archives are left, and the scrape counts
    every request."""
    more_env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "GUNICORN_CMD_ARGS": "--max-requests 10 --max-requests-jitter 0",
    }
    with http.web(redis_url, http.REPO, tmp_path / "web.log", more_env) as (base, pid):
        for _ in range(119):  # 120 with web()'s first: each worker recycled several times
            assert requests.get(f"{base}/healthz", timeout=10).ok
        deadline = time.monotonic() + 30
        while True:  # the master folds a worker's files once it has exited
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            files = db_files(tmp_path)
            owners = [f.rsplit("_", 1)[-1].removesuffix(".db") for f in files]
            left = [
                f for f, o in zip(files, owners, strict=True) if o not in [*children, "archive"]
            ]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert left == []
        assert "counter_archive.db" in files
        text = requests.get(f"{base}/metrics", timeout=10).text
    counted = {
        s.labels["route"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "devcmd_http_requests"
        for s in family.samples
        if s.labels["method"] == "GET" and s.labels["status"] == "200"
    }
    assert counted["/healthz"] == 120
