"""OceanConnect command revocation tasks: create (201 WAITING) and query."""

from __future__ import annotations

from flask import Blueprint

from app.apidoc import doc
from app.context import app_id, authenticated, services
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


@bp.get("")
@authenticated
@doc("Query revocation tasks", query=TasksQuery, answers={200: TasksPage})
def query():
    q = query_args(TasksQuery)
    filters = {
        "taskId": q["taskId"],
        "deviceId": q["deviceId"],
        "status": q["status"],
        "start": q["startTime"],
        "end": q["endTime"],
    }
    total, page = revocations.query(services(), app_id(), filters, q["pageNo"], q["pageSize"])
    return {
        "pagination": {"pageNo": q["pageNo"], "pageSize": q["pageSize"], "totalSize": total},
        "data": [task_answer(task) for task in page],
    }
