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
    (not in this batch): when that one is next due (they wait behind it)."""
    ids = {r["id"] for r in records}
    found: dict[str, int] = {}
    for record in records:
        rank = STATUS_ORDER.get(record["status"], 9)
        earlier = [
            f"msg_{record['commandId']}_{status}"
            for status, other in STATUS_ORDER.items()
            if other < rank and f"msg_{record['commandId']}_{status}" not in ids
        ]
        if not earlier:
            continue
        loaded = svc.notifications.load(record["appId"], record["deviceId"], earlier)
        due = [r["nextAttempt"] for r in loaded if r and r["state"] == "pending"]
        if due:
            found[record["id"]] = max(due)
    return found
