"""Status order per command: a command's notifications go out in the order its status changed,
and one waits while an earlier one of the same command is still pending."""

from __future__ import annotations

from collections import defaultdict

from devcmd.domain.notifications import STATUS_ORDER
from devcmd.services import Services


def sequences(records: list[dict]) -> list[list[dict]]:
    """The records grouped per command, each group in status order."""
    by_command: dict[str, list[dict]] = defaultdict(list)
    for record in sorted(records, key=lambda r: STATUS_ORDER.get(r["status"], 9)):
        by_command[record["commandId"]].append(record)
    return list(by_command.values())


def blockers(svc: Services, records: list[dict]) -> dict[str, int]:
    """For notifications with an earlier status of the same command still pending elsewhere
    (not in this batch): when that one is next due (they wait behind it). One round trip for
    the whole batch."""
    ids = {r["id"] for r in records}
    earlier: dict[str, tuple[tuple[str, str], list[str]]] = {}
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        rank = STATUS_ORDER.get(record["status"], 9)
        names = [
            f"msg_{record['commandId']}_{status}"
            for status, other in STATUS_ORDER.items()
            if other < rank and f"msg_{record['commandId']}_{status}" not in ids
        ]
        if names:
            device = (record["appId"], record["deviceId"])
            earlier[record["id"]] = (device, names)
            wanted[device].update(names)
    if not wanted:
        return {}
    loaded = svc.notifications.load_by_device({d: sorted(n) for d, n in wanted.items()})
    found: dict[str, int] = {}
    for record_id, (device, names) in earlier.items():
        others = (loaded.get((*device, name)) for name in names)
        due = [r["nextAttempt"] for r in others if r and r["state"] == "pending"]
        if due:
            found[record_id] = max(due)
    return found
