"""Revocation task body, query parameters and answers."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime, PageAnswer, PageQuery, identifier
from app.schemas.commands import DeviceCommandResp
from devcmd.clock import to_huawei

ANSWERED_STATUSES = ["WAITING", "RUNNING", "SUCCESS", "PART_SUCCESS", "FAILED"]
TASK_STATUSES = [*ANSWERED_STATUSES, "WAITTING"]


class CreateTaskBody(BaseSchema):
    deviceId = identifier(required=True)


class TasksQuery(PageQuery):
    taskId = identifier(load_default=None)
    deviceId = identifier(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(TASK_STATUSES))


class TaskAnswer(BaseSchema):
    """OceanConnect's revocation task, plus progress fields (our documented extension)."""

    taskId = fields.String(required=True)
    appId = fields.String(required=True)
    deviceId = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ANSWERED_STATUSES))
    totalCount = fields.Integer(required=True, validate=validate.Range(min=0))
    cancelledCount = fields.Integer(validate=validate.Range(min=0))
    reason = fields.String()
    creationTime = HuaweiTime()
    startTime = HuaweiTime()
    finishTime = HuaweiTime()


class TaskCreated(TaskAnswer):
    """The create answer: the task and the commands of its scope (up to TASK_INLINE_COMMANDS)."""

    deviceCommands = fields.List(fields.Nested(DeviceCommandResp), required=True)


class TasksPage(BaseSchema):
    pagination = fields.Nested(PageAnswer, required=True)
    data = fields.List(fields.Nested(TaskAnswer), required=True)


def task_answer(task: dict) -> dict:
    """A task as `TaskAnswer` documents it (its fields in that order; the record's other fields
    left out). A plain function rather than a marshmallow dump, as `device_answer`: the dump
    cost about 30 us of a task's creation or query, which the polling clients repeat."""
    answer = {
        name: task[name] for name in ("taskId", "appId", "deviceId", "status") if name in task
    }
    answer.update(
        {name: int(task[name]) for name in ("totalCount", "cancelledCount") if name in task}
    )
    if "reason" in task:
        answer["reason"] = task["reason"]
    times = ("creationTime", "startTime", "finishTime")
    answer.update({name: to_huawei(task[name]) for name in times if name in task})
    return answer
