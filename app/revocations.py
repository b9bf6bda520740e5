"""OceanConnect command revocation tasks: create (201 WAITING) and query."""

from __future__ import annotations

from flask import Blueprint
from marshmallow import ValidationError

from app.apidoc import doc
from app.context import acting_for, app_id, authenticated, prefetched, services
from app.idempotency import idempotent, new_id
from app.schemas import json_body, query_args
from app.schemas.commands import command_answer
from app.schemas.revocations import (
    CreateTaskBody,
    TaskCreated,
    TasksPage,
    TasksQuery,
    task_answer,
)
from devcmd import errors
from devcmd.domain import revocations
from devcmd.services import Services
from devcmd.store.reads import Read

bp = Blueprint("revocations", __name__, url_prefix="/iocm/app/cmd/v1.4.0/deviceCommandCancelTasks")


@bp.post("")
@authenticated
@doc(
    "Revoke every PENDING command of a device (takes effect at 201; swept in the background)",
    body=CreateTaskBody,
    answers={201: TaskCreated},
    raises=(errors.DeviceNotFound, errors.Congested),
)
@idempotent()
def create():
    body = json_body(CreateTaskBody)
    task = revocations.open_task(services(), app_id(), body["deviceId"], new_id())
    answer = task_answer(task)
    answer["deviceCommands"] = [command_answer(c) for c in task["deviceCommands"]]
    return answer, 201


def _filters() -> dict:
    q = query_args(TasksQuery)
    return {
        "taskId": q["taskId"],
        "deviceId": q["deviceId"],
        "status": q["status"],
        "start": q["startTime"],
        "end": q["endTime"],
    }


def _query_read(svc: Services, app: str) -> Read | None:
    """The read `query` makes, sent along with admission (None for a query that does not parse:
    the view answers it, after admission, as any other)."""
    try:
        return revocations.query_read(svc, app, _filters())
    except ValidationError:
        return None


@bp.get("")
@acting_for("appId", reading=_query_read)
@doc("Query revocation tasks", query=TasksQuery, answers={200: TasksPage})
def query():
    q = query_args(TasksQuery)
    page_no, size = q["pageNo"], q["pageSize"]
    total, page = revocations.query(services(), app_id(), _filters(), page_no, size, prefetched())
    return {
        "pagination": {"pageNo": q["pageNo"], "pageSize": q["pageSize"], "totalSize": total},
        "data": [task_answer(task) for task in page],
    }
