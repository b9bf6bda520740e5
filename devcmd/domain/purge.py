"""Purge of deleted applications: once PURGE_DELAY has passed since `devcmd apps delete` (so
the sweeps that cancelled its devices' commands and their callbacks have finished), beat's job
removes every record of the application in bounded, resumable steps. Its tombstone stays, so
its appId is never reused.
"""

from __future__ import annotations

from collections import Counter

from devcmd.clock import now_ms
from devcmd.services import Services

DEVICES_PER_STEP = 500


def purge_deleted(svc: Services) -> Counter:
    """One bounded step for every application waiting to be purged; counts what went."""
    counts: Counter = Counter()
    for app_id in svc.purge.queued():
        counts += purge_step(svc, app_id)
    return counts


def purge_step(svc: Services, app_id: str) -> Counter:
    """One step of one application's purge: its listed devices, then PURGE_BATCH keys of each
    server's SCAN. A pass over every server that removed nothing ends the purge (something a
    late worker wrote behind a cursor is found by the next pass)."""
    record, cursors = svc.purge.state(app_id)
    if record.get("deleted") != "1":  # never purge a live application
        svc.purge.unqueue(app_id)
        return Counter()
    if now_ms() < int(record["deleteTime"]) + int(svc.config.purge_delay * 1000):
        return Counter()
    counts = Counter(
        devices=_listed_devices(svc, app_id),
        keys=0,
    )
    removed = int(record.get("purgeRemoved") or 0)
    for name, server in svc.purge.servers().items():
        if cursors.get(name) == "done":
            continue
        cursor, found = svc.purge.scan(
            server, app_id, int(cursors.get(name, 0)), svc.config.purge_batch
        )
        counts["keys"] += svc.purge.remove(app_id, found, set())
        cursors[name] = cursor or "done"
    removed += counts["keys"] + counts["devices"]
    if all(cursors.get(name) == "done" for name in svc.purge.servers()):
        if removed == 0:
            svc.purge.finish(app_id, now_ms())
            counts["purged"] = 1
            return counts
        cursors, removed = {}, 0  # another pass: keys may have been written behind a cursor
    svc.purge.save_state(app_id, cursors, removed)
    return counts


def _listed_devices(svc: Services, app_id: str) -> int:
    """Devices still listed as live: their owner keys and shared entries go, then the list."""
    device_ids = svc.purge.live_devices(app_id, DEVICES_PER_STEP)
    svc.purge.remove(app_id, [], set(device_ids))
    svc.purge.forget_live(app_id, device_ids)
    return len(device_ids)
