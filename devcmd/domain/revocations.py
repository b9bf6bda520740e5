"""Revocation tasks: open one (effective at once), sweep it in bounded batches, read them back."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

from devcmd import errors, faults, metrics
from devcmd.clock import now_ms
from devcmd.domain import health, ids
from devcmd.services import Services
from devcmd.store.reads import Read
from devcmd.store.revocations import Batch

STATUS_ALIASES = {"WAITTING": "WAITING"}
CONGESTION_RETRY_AFTER = 5  # seconds a refused caller is asked to wait


def admit(svc: Services) -> None:
    """Refuse new revocation work while a queue it feeds is over its limit: a sweep goes on the
    revocations queue and its callbacks on the callbacks queue. Reads only (one round trip, or
    none while this process's last reading found room: health.queue_backlog), so a refused call
    has written nothing. Raises Congested."""
    for queue, (depth, limit) in (health.queue_backlog(svc, reuse=True) or {}).items():
        if depth > limit:
            raise errors.Congested(queue, depth, limit, CONGESTION_RETRY_AFTER)


def open_task(svc: Services, app_id: str, device_id: str, task_id: str | None = None) -> dict:
    """Open a task for every PENDING command of the device and enqueue its sweep.

    Costs the same whatever the backlog: the scope is a sequence range fixed by one Lua step,
    which also fences it off from delivery. `task_id` fixes the id (an Idempotency-Key's): a
    task with that id open already is answered again, its scope unchanged. Raises
    DeviceNotFound, or Congested (nothing written) while the revocations or callbacks queue is
    over its limit.
    """
    if not ids.is_valid(device_id):
        raise errors.DeviceNotFound()
    admit(svc)
    task_id = task_id or ids.new_id()
    cap = svc.config.task_inline_commands
    opened = svc.revocations.open(app_id, device_id, task_id, now_ms(), cap)
    # The task is accepted once open: a lost enqueue is redone by resume_stalled, so the call
    # still answers 201 (a 503 would tell the client that nothing happened).
    with faults.redone_later(f"sweep of task {task_id}"):
        svc.broker.sweep(app_id, device_id, task_id)
    metrics.TASKS_CREATED.inc()
    task = opened.record or svc.revocations.get(app_id, device_id, task_id) or {}
    if opened.created:  # the 201 says WAITING even if a worker already started the sweep
        task["status"] = "WAITING"
    task["deviceCommands"] = opened.scoped
    return task


def revoke_now(svc: Services, app_id: str, device_id: str, limit: int) -> list[dict]:
    """Cancel every PENDING command of the device within this call; returns them, cancelled.

    The same two steps as a revocation task, run in the request: one Lua step fixes the scope
    and fences it off from delivery, then batches sweep it, each one atomic step that also
    names the commands it cancelled. The task is not listed among the application's tasks; if
    this process dies midway, beat resumes it like any stalled task. Commands already in an
    earlier task's scope belong to that task and are not returned. Raises DeviceNotFound, or
    ScopeTooLarge (nothing changed) when the scope holds more than `limit` commands, or
    Congested (nothing changed): the sweep runs here, but its callbacks queue up like a task's.
    """
    admit(svc)
    task_id = ids.new_id()
    svc.revocations.open(app_id, device_id, task_id, now_ms(), 0, listed=False, limit=limit)
    svc.outbox.mark_dirty(app_id, device_id)  # before the batches, as `sweep` does
    cancelled: list[str] = []
    while True:
        batch = svc.revocations.sweep_batch(
            app_id, device_id, task_id, now_ms(), svc.config.sweep_batch, with_ids=True
        )
        cancelled += batch.ids
        if batch.done:
            break
    if cancelled:
        with faults.redone_later(f"flush of {device_id}"):  # the device is marked dirty
            svc.broker.flush(app_id, device_id)
    metrics.COMMANDS_REVOKED.inc(len(cancelled))
    return svc.commands.load(app_id, ((device_id, command_id) for command_id in cancelled))


def sweep(svc: Services, app_id: str, device_id: str, task_id: str) -> Batch:
    """Run batches for at most `sweep_step_seconds`; returns the last batch (done or not), its
    `cancelled_now` summed over this call's batches.

    Safe to run twice or concurrently: every batch is one atomic, idempotent Lua step.
    """
    with metrics.SWEEP_DURATION.time():
        batch = _sweep_step(svc, app_id, device_id, task_id)
    metrics.COMMANDS_REVOKED.inc(batch.cancelled_now)
    if batch.finished_now:
        metrics.TASKS_FINISHED.labels(batch.status).inc()
    return batch


def _sweep_step(svc: Services, app_id: str, device_id: str, task_id: str) -> Batch:
    deadline = time.monotonic() + svc.config.sweep_step_seconds
    cancelled = 0
    # Marked before the batches too: if this process dies after a batch and before the flush
    # below, beat's drain still finds the device's outbox.
    svc.outbox.mark_dirty(app_id, device_id)
    while True:
        batch = svc.revocations.sweep_batch(
            app_id, device_id, task_id, now_ms(), svc.config.sweep_batch
        )
        cancelled += batch.cancelled_now
        if batch.done or time.monotonic() >= deadline:
            break
    if cancelled:
        svc.outbox.mark_dirty(app_id, device_id)
        svc.broker.flush(app_id, device_id)
    return dataclasses.replace(batch, cancelled_now=cancelled)


def get(svc: Services, app_id: str, task_id: str, found: dict | None = None) -> dict:
    """One task of the application; `found` is the answer of `get_read` if it was already made.
    Raises TaskNotFound."""
    if found is None:
        device_id = svc.revocations.device_of(app_id, task_id) if ids.is_valid(task_id) else None
        found = svc.revocations.get(app_id, device_id, task_id) if device_id else None
    if not found:
        raise errors.TaskNotFound()
    return found


def get_read(svc: Services, app_id: str, task_id: str) -> Read | None:
    """The store read `get` makes, to send ahead; None when it cannot be made in one step
    (the task's device is not known to this process yet, or the id is malformed)."""
    return svc.revocations.get_read(app_id, task_id) if ids.is_valid(task_id) else None


def query_read(svc: Services, app_id: str, filters: dict) -> Read | None:
    """The store read `query` makes, to send ahead: a poll by taskId (see `get_read`)."""
    return get_read(svc, app_id, filters["taskId"]) if filters.get("taskId") else None


def query(
    svc: Services,
    app_id: str,
    filters: dict,
    page_no: int,
    size: int,
    found: dict | None = None,
) -> tuple[int, list]:
    """Tasks matching the filters, newest first: (total, one page); `found` is the answer of
    `query_read` with the same filters if it was already made."""
    if filters.get("taskId"):
        try:
            tasks = [get(svc, app_id, filters["taskId"], found)]
        except errors.TaskNotFound:
            tasks = []
        tasks = [t for t in tasks if _matches(t, filters)]
        return len(tasks), tasks[page_no * size : (page_no + 1) * size]
    device_id = filters.get("deviceId")
    if device_id and not ids.is_valid(device_id):
        return 0, []
    pairs = svc.revocations.ids_between(app_id, device_id, filters["start"], filters["end"])
    status = STATUS_ALIASES.get(filters.get("status") or "", filters.get("status"))
    if not status:
        return len(pairs), svc.revocations.load(
            app_id, pairs[page_no * size : (page_no + 1) * size]
        )
    matching = [t for t in svc.revocations.load(app_id, pairs) if t["status"] == status]
    return len(matching), matching[page_no * size : (page_no + 1) * size]


def _matches(task: dict, filters: dict) -> bool:
    status = STATUS_ALIASES.get(filters.get("status") or "", filters.get("status"))
    created = int(task["creationTime"])
    return (
        (not filters.get("deviceId") or task["deviceId"] == filters["deviceId"])
        and (not status or task["status"] == status)
        and filters["start"] <= created <= filters["end"]
    )


def resume_stalled(svc: Services, buckets: Iterable[int] | None = None) -> int:
    """Re-enqueue sweeps of unfinished tasks with no progress for `stall_seconds`.

    Covers a message lost between broker pop and ack, or a create call that died after
    opening its task but before enqueueing it. Looks at the given index buckets (default:
    all), at most 500 tasks each. Returns how many were re-enqueued.
    """
    now = now_ms()
    stalled = [
        task
        for bucket in (svc.buckets if buckets is None else buckets)
        for task in svc.revocations.stalled(bucket, now - svc.config.stall_seconds * 1000)
    ]
    for app_id, device_id, task_id in stalled:
        svc.revocations.touch(app_id, device_id, task_id, now)
        svc.broker.sweep(app_id, device_id, task_id)
    return len(stalled)
