"""`devcmd run`, the Procfile and the admin commands as real processes on 127.0.0.1.

Each run starts in its own process group and is stopped with SIGINT, as Ctrl-C in a terminal
would; every process it started must then be gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
import requests

from devcmd.config import Config
from devcmd.domain import auth
from devcmd.embedded import RedisServer, find_binary, free_port
from devcmd.services import Services
from tests.e2e.oceanconnect import OceanConnect
from tests.e2e.receiver import Receiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEALTHY_WITHIN = 60.0
STOPPED_WITHIN = 30.0


class Running:
    """A command running in its own process group, its merged output collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        """Every process below the command: shells, apps, their workers, the server."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, port: int) -> None:
        """Poll /readyz until 200 (a worker heartbeat included); fail early if the run dies."""
        deadline = time.monotonic() + HEALTHY_WITHIN
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.output}"
            try:
                response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        pytest.fail(f"/readyz not 200 within {HEALTHY_WITHIN} s:\n{self.output}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole process group; returns the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(STOPPED_WITHIN)

    def close(self, leftovers: list[psutil.Process]) -> None:
        """Kill whatever this test started and is still alive, so a failure leaks nothing."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for process in alive(leftovers):
            process.kill()
        self.reader.join(5)
        self.proc.stdout.close()


@contextmanager
def running(argv: list[str], env: dict[str, str]) -> Iterator[tuple[Running, list]]:
    """Start `argv`; yields it and a list the test fills with the processes it saw."""
    run = Running(argv, env)
    seen: list[psutil.Process] = []
    try:
        yield run, seen
    finally:
        run.close(seen or run.descendants())


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (a zombie waiting for its reaper counts as gone)."""
    found = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def wait_gone(processes: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """Wait until none of `processes` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(processes)


def worker_main_pids(processes: list[psutil.Process]) -> set[int]:
    """The Celery workers' main processes among `processes` (those with pool children)."""
    found = set()
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            if "workers worker" in " ".join(process.cmdline()) and process.children():
                found.add(process.pid)
    return found


def command_lines(processes: list[psutil.Process]) -> list[str]:
    lines = []
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            lines.append(" ".join(process.cmdline()))
    return lines


def redis_servers_on(port: int) -> list[str]:
    """Command lines of server processes serving `port` (the server retitles itself
    `<binary> host:port`; the binary is valkey-server or, with REDIS_SERVER, another)."""
    binary = Path(find_binary()).name
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if binary in line and f":{port}" in line:
            found.append(line)
    return found


def prefixed(output: str, name: str) -> bool:
    """Whether honcho's `HH:MM:SS name | ` prefix starts some line of `output`."""
    pattern = rf"^\d\d:\d\d:\d\d {re.escape(name)}\s*\| \S"
    return re.search(pattern, output, re.MULTILINE) is not None


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """The environment of a fresh checkout: no REDIS_URL, a private home and free ports."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(
        DEVCMD_HOME=str(home),
        EMBEDDED_REDIS_PORT=str(free_port()),
        PORT=str(free_port()),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def devcmd(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run one admin command to completion."""
    argv = [str(BIN / "devcmd"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_run_serves_logs_per_process_and_stops_everything_on_ctrl_c(env, home) -> None:
    port = int(env["PORT"])
    with running([str(BIN / "devcmd"), "run"], env) as (run, seen):
        run.wait_ready(port)
        metrics_dirs = list(home.glob("metrics-*"))
        assert len(metrics_dirs) == 1, run.output
        # Web and workers share the directory: both Celery workers have their files there.
        # /readyz needs one worker: the other may still be starting its pool.
        deadline = time.monotonic() + HEALTHY_WITHIN
        while True:
            seen[:] = run.descendants()
            pids = {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dirs[0].glob("*.db")}
            worker_pids = worker_main_pids(seen)
            if (len(worker_pids) == 2 and worker_pids <= pids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(worker_pids) == 2, run.output
        assert worker_pids <= pids, (worker_pids, pids)
        # /readyz needs one worker; the second may beat a moment later.
        deadline = time.monotonic() + 15
        scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        while "devcmd_workers_alive 2.0" not in scrape.text and time.monotonic() < deadline:
            time.sleep(0.5)
            scrape = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert "devcmd_workers_alive 2.0" in scrape.text
        lines = command_lines(seen)
        for part in ("gunicorn", "workers worker", "workers beat", Path(find_binary()).name):
            assert any(part in line for line in lines), (part, lines)

        assert run.interrupt() == 130, run.output
        assert wait_gone(seen) == [], run.output

    banner = run.lines[0]
    assert f"http://127.0.0.1:{port}" in banner
    assert "devcmd apps create" in banner
    for name in ("web", "worker", "callbacks", "beat"):
        assert prefixed(run.output, name), (name, run.output)
    assert prefixed(run.output, "system")
    # Redis ignored the Ctrl-C and was stopped by devcmd, after the processes that use it.
    redis_log = (home / "redis" / "redis.log").read_text()
    assert "Received SIGTERM" in redis_log
    assert "Received SIGINT" not in redis_log
    assert redis_servers_on(int(env["EMBEDDED_REDIS_PORT"])) == []
    assert not metrics_dirs[0].exists()  # removed with the run


def test_procfile_runs_under_honcho(env, redis_url) -> None:
    """The Procfile works with `honcho start` against an external Redis."""
    port = int(env["PORT"])
    env["REDIS_URL"] = redis_url
    argv = [str(BIN / "honcho"), "-f", str(ROOT / "Procfile"), "start", "-p", str(port)]
    with running(argv, env) as (run, seen):
        run.wait_ready(port)
        seen.extend(run.descendants())
        assert run.interrupt() == 130, run.output
        assert wait_gone(seen) == [], run.output
    for name in ("web.1", "worker.1", "callbacks.1", "beat.1"):
        assert prefixed(run.output, name), (name, run.output)


def test_apps_create_without_redis_url_uses_a_transient_embedded_redis(env, home) -> None:
    redis_port = int(env["EMBEDDED_REDIS_PORT"])
    created = devcmd(env, "apps", "create", "--app-id", "acme")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["appId"] == "acme"
    assert redis_servers_on(redis_port) == []

    # Data persisted in $DEVCMD_HOME/redis (AOF): a second command sees it.
    listed = devcmd(env, "apps", "list")
    assert listed.returncode == 0, listed.stderr
    assert [app["appId"] for app in json.loads(listed.stdout)] == ["acme"]
    assert (home / "redis").is_dir()

    again = devcmd(env, "apps", "create", "--app-id", "acme")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert again.stdout == ""
    assert redis_servers_on(redis_port) == []


def test_apps_create_reuses_a_running_embedded_redis_and_leaves_it_up(env, home) -> None:
    server = RedisServer(home / "redis", int(env["EMBEDDED_REDIS_PORT"])).start()
    try:
        created = devcmd(env, "apps", "create", "--app-id", "acme")
        assert created.returncode == 0, created.stderr
        assert server.is_up()
        svc = Services.from_config(Config(redis_url=server.url))
        try:
            assert [app["appId"] for app in auth.list_applications(svc)] == ["acme"]
        finally:
            svc.redis.close()
    finally:
        server.stop()


def test_run_on_a_local_cluster_serves_the_oceanconnect_flow_over_every_master(env) -> None:
    """`devcmd run --redis-cluster 3`: a 3-master cluster and a separate broker; one
    application's devices spread over every master; a revocation task ends SUCCESS with one
    signed callback per command; Ctrl-C stops every process, the servers included."""
    port = int(env["PORT"])
    receiver = Receiver().start()
    with running([str(BIN / "devcmd"), "run", "--redis-cluster", "3"], env) as (run, seen):
        run.wait_ready(port)
        seen.extend(run.descendants())
        found = re.search(r"masters at (redis\+cluster://\S+), broker at (\S+)", run.output)
        assert found, run.output
        cluster_url, broker_url = found.groups()
        cli_env = {**env, "REDIS_URL": cluster_url, "CELERY_BROKER_URL": broker_url}
        created = devcmd(cli_env, "apps", "create", "--app-id", "fleet")
        assert created.returncode == 0, created.stderr
        app = json.loads(created.stdout)
        oc = OceanConnect(f"http://127.0.0.1:{port}", "fleet", app["secret"])
        assert oc.login().status_code == 200
        url = receiver.url("/oc")
        svc = Services.from_config(Config(redis_url=cluster_url, celery_broker_url=broker_url))
        try:
            # Device ids are generated, so which master holds a device is chance: 12 devices
            # leave one master empty about 2% of the time. Register until every master holds
            # one (bounded); the check is that the keys really spread, not that 12 suffice.
            devices: list[str] = []
            commands: dict[str, list[str]] = {}
            per_master = [0, 0, 0]
            while len(devices) < 12 or not all(per_master):
                assert len(devices) < 60, per_master
                d = oc.register_device(f"meter-{len(devices)}").json()["deviceId"]
                devices.append(d)
                commands[d] = [
                    oc.create_command(d, "SET", {"i": i}, url).json()["commandId"] for i in range(5)
                ]
                per_master = [
                    len(node.redis_connection.keys("dc:{fleet:*"))
                    for node in svc.redis.get_primaries()
                ]
        finally:
            svc.close()
        assert len(per_master) == 3
        assert all(count > 0 for count in per_master), per_master
        target = devices[0]
        task = oc.create_cancel_task(target)
        assert task.status_code == 201, task.text
        finished = oc.wait_cancel_task(task.json()["taskId"])
        assert (finished["status"], finished["cancelledCount"]) == ("SUCCESS", 5)
        accepted = receiver.wait_for_accepted(set(commands[target]), 30)
        assert sorted(d.body["commandId"] for d in accepted) == sorted(commands[target])
        assert all(d.headers["webhook-signature"].startswith("v1,") for d in accepted)
        oc.close()
        assert run.interrupt() == 130, run.output  # as for Ctrl-C in a terminal
        assert wait_gone(seen) == [], command_lines(alive(seen))
    receiver.stop()
