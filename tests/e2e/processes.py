"""Child processes for end-to-end tests: gunicorn and a Celery worker, each in its own group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
import requests

from devcmd.config import Config

REPO = Path(__file__).resolve().parents[2]
PROCESSES = pytest.StashKey[list["Process"]]()  # a test's children, for its failure report


def _config_variables() -> set[str]:
    """Every environment variable `Config.from_env` reads (so none leaks in from the caller)."""
    names = {"DEVCMD_HOME" if f.name == "home" else f.name.upper() for f in fields(Config)}
    return names - {"EXTRA"}


def child_env(redis_url: str, home: Path, **settings: object) -> dict[str, str]:
    """The caller's environment minus devcmd's settings, plus REDIS_URL and `settings`; callbacks
    to 127.0.0.1 are allowed (CALLBACK_ALLOW_PRIVATE=true), as under `devcmd run`; flow control
    keeps its default."""
    env = {k: v for k, v in os.environ.items() if k not in _config_variables()}
    env.update(REDIS_URL=redis_url, DEVCMD_HOME=str(home), PYTHONUNBUFFERED="1")
    env.update(CALLBACK_ALLOW_PRIVATE="true")
    env.update({name.upper(): str(value) for name, value in settings.items()})
    return env


class Process:
    """A child in its own process group, its stdout and stderr in `<log_dir>/<name>.log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 60) -> str:
        """The last lines the process wrote."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL it after `grace` seconds, reap, close the log."""
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.popen.wait()
        self._signal_group(signal.SIGKILL)  # pool children that outlived their parent
        self._log.close()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)


def start_web(port: int, env: dict[str, str], log_dir: Path) -> Process:
    """gunicorn serving `app:create_app()` on 127.0.0.1:`port`, with the product's own settings
    module (`devcmd.gunicorn_config`), as the Procfile and `devcmd run` start it."""
    args = [
        sys.executable, "-m", "gunicorn", "-c", "python:devcmd.gunicorn_config", "app:create_app()",
        "--bind", f"127.0.0.1:{port}",
        "--graceful-timeout", "5",
    ]  # fmt: skip
    return Process("gunicorn", args, env, log_dir)


def start_worker(env: dict[str, str], log_dir: Path) -> Process:
    """One Celery worker consuming both devcmd queues with 2 pool processes."""
    args = [
        sys.executable, "-m", "celery", "-A", "workers", "worker",
        "--queues", "revocations,callbacks",
        "--concurrency", "2",
        "--loglevel", "INFO",
    ]  # fmt: skip
    return Process("celery-worker", args, env, log_dir)


def start_beat(env: dict[str, str], log_dir: Path) -> Process:
    """Celery beat (timers, callback retries, stalled-task recovery), as `devcmd run` starts it."""
    args = [
        sys.executable, "-m", "celery", "-A", "workers", "beat",
        "--schedule", str(log_dir / "celerybeat-schedule"),
        "--loglevel", "INFO",
    ]  # fmt: skip
    return Process("celery-beat", args, env, log_dir)


def report(processes: list[Process]) -> str:
    """Every process's exit state and output tail, for failure messages."""
    parts = []
    for process in processes:
        state = "running" if process.alive() else f"exited {process.popen.returncode}"
        parts.append(f"--- {process.name} ({state}), {process.log_path}:\n{process.tail()}")
    return "\n".join(parts)


def wait_ready(
    base_url: str, processes: list[Process], timeout: float = 60.0, path: str = "/readyz"
) -> None:
    """Poll `GET /readyz` until 200 (Redis, broker, a worker heartbeat, queues under their
    limits); fail with the logs. `path="/healthz"` waits only for the web process to answer.
    The timeout is for a loaded 2-core machine starting gunicorn, a worker and beat at once (a
    worker takes a few seconds idle); a dead process fails at once anyway.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not all(p.alive() for p in processes):
            raise RuntimeError(f"a process died while starting:\n{report(processes)}")
        try:
            response = requests.get(f"{base_url}{path}", timeout=1.0)
        except requests.RequestException as exc:
            last = repr(exc)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        time.sleep(0.1)
    logs = report(processes)
    raise RuntimeError(f"{path} not 200 after {timeout} s (last: {last}):\n{logs}")
