"""A stop always stops, and `devcmd run` heals its embedded Redis. Processes are found through
/proc (Linux), so what is checked is what the kernel runs, whoever its parent is now.

- a Celery worker whose broker is down ends within WORKER_STOP_TIMEOUT of a SIGTERM, pool
  children included;
- `devcmd run` restarts its embedded Redis when that process dies, and says so;
- a SIGKILLed `devcmd run` leaves no process behind (its children die with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from devcmd.embedded import RedisServer, free_port
from tests.e2e.processes import child_env
from tests.integration.test_run import BIN, running

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux"),
]

STOP_TIMEOUT = 3.0  # WORKER_STOP_TIMEOUT of these tests
# A pool child whose worker is gone may wait a second after saying so before it exits
# (billiard's Worker._do_exit); the rest of a stop's bound (it took 3.1 s here, idle) is room
# for a loaded machine.
CHILD_EXIT = 1.0
STOP_WITHIN = STOP_TIMEOUT + CHILD_EXIT + 1.5
ROOT = Path(__file__).resolve().parents[2]


def stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a live process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every process below `root` now: pid -> start time (a reused pid is not the same)."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := stat(int(entry.name))):
            children.setdefault(found[0], []).append(int(entry.name))
            started[int(entry.name)] = found[2]
    below, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            below[child] = started[child]
            todo.append(child)
    return below


def still_running(processes: dict[int, int]) -> list[int]:
    """Those of `processes` that still run (a zombie has ended)."""
    return [
        pid
        for pid, start in processes.items()
        if (found := stat(pid)) and found[2] == start and found[1] != "Z"
    ]


def wait_gone(processes: dict[int, int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while still_running(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return still_running(processes)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("fault", ["stopped", "paused"])
def test_a_worker_without_its_broker_stops_within_the_stop_timeout(tmp_path, fault) -> None:
    """The broker stopped (connections refused) or paused (every call waits for its socket
    timeout: the warm shutdown cannot finish by itself)."""
    server = RedisServer(tmp_path / "redis", free_port()).start()
    env = child_env(server.url, tmp_path / "home", worker_stop_timeout=STOP_TIMEOUT)
    argv = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--concurrency", "2"]
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    tree: dict[int, int] = {}
    try:
        client = redis.Redis(port=server.port)
        deadline = time.monotonic() + 30
        while not client.zcard("dc:workers") and time.monotonic() < deadline:
            time.sleep(0.2)  # the heartbeat: the worker is up
        assert client.zcard("dc:workers"), (tmp_path / "worker.log").read_text()[-3000:]
        tree = descendants(worker.pid) | {worker.pid: stat(worker.pid)[2]}
        assert len(tree) >= 3  # the worker and its two pool children
        if fault == "stopped":
            server.kill()
        else:
            client.execute_command("CLIENT", "PAUSE", 60_000)
        client.close()
        time.sleep(2)  # the worker notices and starts reconnecting
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        left = wait_gone(tree, 3 * STOP_TIMEOUT)
        took = time.monotonic() - started
        assert left == [], ([_describe(pid) for pid in left], log_tail(tmp_path))
        # Below 2 * STOP_TIMEOUT: the timeout bounds the stop.
        assert took < STOP_WITHIN, (took, log_tail(tmp_path))
    finally:
        kill_all(still_running(tree))
        worker.wait(10)
        log.close()
        server.kill()


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A fresh checkout's environment for `devcmd run`: no REDIS_URL, free ports."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(
        DEVCMD_HOME=str(tmp_path / "home"),
        EMBEDDED_REDIS_PORT=str(free_port()),
        PORT=str(free_port()),
        WORKER_STOP_TIMEOUT=str(STOP_TIMEOUT),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def is_server(command_line: str) -> bool:
    """Whether a command line is the embedded data server's (Valkey or Redis)."""
    return "valkey-server" in command_line or "redis-server" in command_line


def redis_pid(tree: dict[int, int]) -> int:
    (pid,) = [p for p in tree if is_server(Path(f"/proc/{p}/cmdline").read_text())]
    return pid


def test_devcmd_run_restarts_its_redis_and_leaves_nothing_when_killed(env) -> None:
    port = int(env["PORT"])
    with running([str(BIN / "devcmd"), "run"], env) as (run, _):
        run.wait_ready(port)
        tree = descendants(run.proc.pid)
        names = {pid: _cmd(pid) for pid in tree}
        try:
            os.kill(redis_pid(tree), signal.SIGKILL)  # a crash of the embedded Redis
            deadline = time.monotonic() + 30
            while "starting it again" not in run.output and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "starting it again" in run.output, run.output
            run.wait_ready(port)  # served again by the same processes: none was restarted
            others = {pid: start for pid, start in tree.items() if not is_server(names[pid])}
            gone = set(others) - set(still_running(others))
            assert not gone, ([names[pid] for pid in gone], run.output)

            everything = descendants(run.proc.pid)
            assert len(everything) >= 8  # runners, web, workers, beat, pool children, Redis
            os.kill(run.proc.pid, signal.SIGKILL)
            left = wait_gone(everything, 6 * STOP_TIMEOUT)
            assert left == [], [_describe(pid) for pid in left]
        finally:
            kill_all(still_running(descendants(run.proc.pid) | tree))


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def log_tail(tmp_path: Path) -> str:
    return (tmp_path / "worker.log").read_text(errors="replace")[-3000:]


def _describe(pid: int) -> str:
    """A leftover process, told apart from its look-alikes (a worker and its pool children share
    a command line): its parent, state, blocked and pending signals, and where each thread
    waits, so that a failure says why the process outlived its stop."""
    fields = ("PPid", "State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        threads = [
            f"{task.name}:{(task / 'comm').read_text().strip()}@{(task / 'wchan').read_text()}"
            for task in Path(f"/proc/{pid}/task").iterdir()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return f"{pid} (gone meanwhile) {_cmd(pid)}"
    found = [line.replace("\t", " ") for line in status if line.split(":")[0] in fields]
    return f"{pid} {_cmd(pid)} | {'; '.join(found)} | threads {' '.join(threads)}"
