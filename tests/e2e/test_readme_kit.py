"""The README's client and receiver examples, run as written against a real stack, and the
complete ones in examples/: a submitter's commands revoked, their callbacks received, verified
and handled by the receiver, all real processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devcmd.embedded import free_port
from tests.e2e.conftest import Stack
from tests.e2e.processes import REPO

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0


def readme_example(heading: str) -> str:
    """The first python block after `## heading` in README.md."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"\n## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def env_for(stack: Stack, application: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEVCMD_URL": stack.base_url,
        "DEVCMD_APP_ID": application["appId"],
        "DEVCMD_SECRET": application["secret"],
        **extra,
    }


def wait_listening(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"receiver not listening on {port} (exit {process.poll()})")


def lines_when(path: Path, count: int, word: str) -> list[str]:
    """The lines of `path` once `count` of them contain `word` (or TIMEOUT passed)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = path.read_text().splitlines()
        if sum(word in line for line in lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.fixture
def receiver_process(tmp_path: Path) -> Iterator:
    """Starts a receiver (python args, env), its stdout in a file; stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str], port: int) -> Path:
        out = tmp_path / f"receiver-{len(started)}.out"
        with out.open("wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=stdout, stderr=subprocess.DEVNULL
            )
        started.append(process)
        wait_listening(port, process)
        return out

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def test_the_readme_examples_submit_revoke_and_receive_every_callback(
    stack: Stack, application: dict[str, str], receiver_process
) -> None:
    port = free_port()
    secret = application["webhookSecret"]
    receiver_env = {**os.environ, "DEVCMD_WEBHOOK_SECRET": secret, "PORT": str(port)}
    out = receiver_process(["-c", readme_example("Callback receiver")], receiver_env, port)

    callback_url = f"http://127.0.0.1:{port}/"
    env = env_for(stack, application, CALLBACK_URL=callback_url)
    code = readme_example("Python client")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "SUCCESS 3/3 cancelled\n"
    received = lines_when(out, 3, "CANCELED")
    assert len(received) == 3
    assert all(line.split()[1:] == ["CANCELED", "None"] for line in received)
    assert len({line.split()[0] for line in received}) == 3


def test_the_example_submitter_and_receiver_work_together(
    stack: Stack, application: dict[str, str], receiver_process
) -> None:
    port = free_port()
    receiver_env = {
        **os.environ,
        "DEVCMD_WEBHOOK_SECRETS": application["webhookSecret"],
        "PORT": str(port),
    }
    out = receiver_process(["examples/receiver.py"], receiver_env, port)

    args = ["--commands", "4", "--callback-url", f"http://127.0.0.1:{port}/devcmd"]
    done = subprocess.run(
        [sys.executable, "examples/submitter.py", *args],
        cwd=REPO, env=env_for(stack, application), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["task"]["status"] == "SUCCESS"
    assert summary["task"]["cancelledCount"] == 4
    lines_when(out, 4, "CANCELED")
    for command_id in summary["commands"]:
        latest = requests.get(f"http://127.0.0.1:{port}/commands/{command_id}", timeout=5)
        assert latest.json()["status"] == "CANCELED"
        assert latest.json()["deviceId"] == summary["deviceId"]
