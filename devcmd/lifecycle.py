"""Process lifetimes: a child that dies with its parent, and a stop that always ends.

Linux only (prctl); elsewhere these are no-ops and `devcmd run`'s own stop is the only guard.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask the kernel to send `sig` to this process when the thread that forked it ends (the
    parent died, even by SIGKILL). Kept across exec, so a launcher can call it before exec.

    `parent` is the pid of the process that forked this one, read before the fork: if it is no
    longer this process's parent once the request is in place, it died before, and nobody will
    send `sig`, so this process sends it to itself. (Without `parent`, only an adoption by init
    is noticed; under a child subreaper, such as a container's init or a service manager, an
    orphan's parent is that subreaper instead.)"""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    orphaned = os.getppid() == 1 if parent is None else os.getppid() != parent
    if orphaned:  # the parent died before the request was in place: nobody will send `sig`
        os.kill(os.getpid(), sig)


def dies_with_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for a child of this process that makes it die with this process."""
    return functools.partial(die_with_parent, sig, os.getpid())


def exit_within(seconds: float, exitcode: int = 1) -> threading.Timer:
    """Guarantee this process ends `seconds` from now: a daemon timer that exits hard if the
    orderly shutdown has not finished by then (e.g. it waits for a broker that is down). Not
    from a signal handler: see `Deadline`."""
    timer = threading.Timer(seconds, _exit_now, args=(seconds, exitcode))
    timer.daemon = True
    timer.start()
    return timer


class Deadline:
    """A hard exit `seconds` after `start()`, whatever the orderly stop waits for, for a stop
    begun in a signal handler. The thread that exits waits from the moment the deadline is
    made, and `start()` only writes a byte to a pipe: it takes no lock and starts no thread (a
    thread started from a handler can deadlock on a lock of the threading module that the
    interrupted main thread holds), so it never hangs, however often it is called."""

    def __init__(self, seconds: float, exitcode: int = 1) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        waiting = threading.Thread(
            target=self._wait, args=(seconds, exitcode), name="stop-deadline", daemon=True
        )
        waiting.start()

    def start(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe: started long ago
            os.write(self._write, b"!")

    def _wait(self, seconds: float, exitcode: int) -> None:
        os.read(self._read, 1)
        time.sleep(seconds)
        _exit_now(seconds, exitcode)


def _exit_now(seconds: float, exitcode: int) -> None:
    # The last line is written from a thread of its own: a log handler's lock held by a stuck
    # thread (or a pipe nobody reads) must not hold up the exit.
    last = threading.Thread(
        target=log.error,
        args=("shutdown did not finish within %.0f s: exiting now", seconds),
        daemon=True,
    )
    last.start()
    last.join(1.0)
    os._exit(exitcode)


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
        exit_within(seconds)  # first: the log line below may wait for a stuck handler
        log.warning("parent process %d is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    thread.start()
    return thread
