"""prometheus_client's multiprocess files, kept few: a dead process's counts folded into one file.

Every process writes its counters, histograms and summaries to files named after its pid in
PROMETHEUS_MULTIPROC_DIR, and those files must outlive it (a counter never goes back). Left
alone they pile up: gunicorn recycles a worker every ~100,000 requests and Celery replaces pool
children, each leaving its files behind, and every scrape reads them all. So when a process is
gone (gunicorn's master on `child_exit`; a Celery pool child as it shuts down) its files are
folded into one `<kind>_archive.db` per kind and removed, with prometheus_client's own merge
(`MultiProcessCollector.merge(accumulate=False)`, meant for writing merged values back).

A fold replaces the archive, then removes the dead process's file: a scrape in between would
count that process twice. Folds hold an exclusive `flock` on a lock file in the directory, and
scrapes (`Collector`) a shared one while they read.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

KINDS = ("counter", "histogram", "summary")  # gauges: mark_process_dead drops the live ones
LOCK_FILE = "folding.lock"  # not *.db: the collector reads only those


@contextmanager
def _locked(path: str, operation: int) -> Iterator[None]:
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the lock


class Collector(MultiProcessCollector):
    """The multiprocess collector, reading while no fold is under way."""

    def collect(self):
        with _locked(self._path, fcntl.LOCK_SH):
            return list(super().collect())


def fold(pid: int, path: str) -> int:
    """Fold the counters, histograms and summaries of the process `pid` (gone, or going: what it
    writes afterwards is lost) into the directory's archive files; returns the files removed."""
    removed = 0
    with _locked(path, fcntl.LOCK_EX):
        for kind in KINDS:
            dead = os.path.join(path, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = os.path.join(path, f"{kind}_archive.db")
            merged = MultiProcessCollector.merge(
                [f for f in (archive, dead) if os.path.exists(f)], accumulate=False
            )
            staged = archive + ".new"
            if os.path.exists(staged):  # left by a fold that crashed: never read, start again
                os.remove(staged)
            out = MmapedDict(staged)
            try:
                for metric in merged:
                    for sample in metric.samples:
                        key = [metric.name, sample.name, sample.labels, metric.documentation]
                        out.write_value(json.dumps(key, sort_keys=True), sample.value, 0.0)
            finally:
                out.close()
            os.replace(staged, archive)
            os.remove(dead)
            removed += 1
    return removed
