"""Process lifetimes with real processes: an orphaned process stops by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, time
from devcmd import lifecycle
lifecycle.stop_when_orphaned(5.0, poll=0.05)
print("ready", flush=True)
time.sleep(60)
"""

# The parent starts the child, prints its pid, then waits to be killed.
PARENT = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
print(child.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_process_whose_parent_dies_stops_by_itself() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            child = int(parent.stdout.readline())
            time.sleep(0.3)
            assert alive(child)  # a live parent: the watch leaves it alone
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait()
            deadline = time.monotonic() + 10
            while alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(child)
        finally:
            parent.kill()


# Under a child subreaper (a container's init, a service manager) an orphan is adopted by the
# subreaper, not by init. This script is one: a middle process forks a child and exits at once;
# the child asks to die with it only once it has been adopted, as a launcher that died between
# fork and prctl would leave it. The script reports how the child ended.
LATE_REQUEST = """
import ctypes, os, signal, time
from devcmd import lifecycle
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
middle = os.fork()
if middle == 0:
    parent = os.getpid()
    if os.fork() == 0:
        while os.getppid() == parent:
            time.sleep(0.01)
        lifecycle.die_with_parent(signal.SIGTERM, parent)
        os._exit(0)
    os._exit(0)
os.waitpid(middle, 0)
_, status = os.wait()
print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status))
"""


def test_a_child_whose_parent_died_before_it_asked_gets_its_signal_under_a_subreaper() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", LATE_REQUEST], capture_output=True, text=True, timeout=30
    )
    assert ended.returncode == 0, ended.stderr
    assert int(ended.stdout) == signal.SIGTERM  # not a normal exit: it did not outlive its parent


# A thread that holds the log handler's lock for ever (a stuck write), and a stop that times out.
STUCK_LOG = """
import logging, sys, threading, time
from devcmd import lifecycle
logging.basicConfig(stream=sys.stderr)
handler = logging.getLogger().handlers[0]
threading.Thread(target=lambda: (handler.acquire(), time.sleep(60)), daemon=True).start()
time.sleep(0.1)
lifecycle.exit_within(0.2, exitcode=3)
time.sleep(60)
"""


def test_a_stop_that_times_out_exits_even_when_logging_is_stuck() -> None:
    started = time.monotonic()
    ended = subprocess.run([sys.executable, "-c", STUCK_LOG], capture_output=True, timeout=30)
    assert ended.returncode == 3
    assert time.monotonic() - started < 20  # far below the 60 s sleeps, whatever the load


# A worker's stop as Celery runs it: a SIGTERM handler that starts the deadline and then waits
# for an orderly stop that never ends (a second SIGTERM comes while it waits).
STUCK_STOP = """
import signal, time
from devcmd import lifecycle
deadline = lifecycle.Deadline(0.5, exitcode=4)
def stop(*_):
    deadline.start()
    time.sleep(60)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_deadline_started_in_a_signal_handler_ends_a_stop_that_hangs() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", STUCK_STOP], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout.readline().strip() == "ready"
            time.sleep(1.0)
            assert process.poll() is None  # the deadline runs from start(), not from its making
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 4
            assert time.monotonic() - started < 20  # far below the handler's 60 s
        finally:
            process.kill()
