"""Process lifetimes: a child that dies with its parent, and a stop that always ends.

Linux only (prctl); elsewhere these are no-ops and `devcmd run`'s own stop is the only guard.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when the thread that forked it ends (the
    parent died, even by SIGKILL). Kept across exec, so a launcher can call it before exec."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() == 1:  # the parent died before the call: nobody will signal us
        os.kill(os.getpid(), sig)


def exit_within(seconds: float, exitcode: int = 1) -> threading.Timer:
    """Guarantee this process ends `seconds` from now: a daemon timer that exits hard if the
    orderly shutdown has not finished by then (e.g. it waits for a broker that is down)."""

    def _force() -> None:
        log.error("shutdown did not finish within %.0f s: exiting now", seconds)
        logging.shutdown()
        os._exit(exitcode)

    timer = threading.Timer(seconds, _force)
    timer.daemon = True
    timer.start()
    return timer


def stop_when_orphaned(seconds: float, poll: float = 0.5) -> threading.Thread | None:
    """As gunicorn's workers do: a daemon thread that notices this process's parent is gone
    (the process was handed to another) and stops it, SIGTERM to itself for an orderly stop
    and a hard exit `seconds` later whatever that stop waits for. The backstop of
    `die_with_parent`, whose signal a busy process has been seen to outlive. A process whose
    parent is init (a container's first process, a daemon) has nothing to watch."""
    parent = os.getppid()
    if parent <= 1:
        return None

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        log.warning("parent process %d is gone: stopping", parent)
        exit_within(seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
