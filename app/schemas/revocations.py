"""Revocation task body, query parameters and answers."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime, PageAnswer, PageQuery, identifier
from app.schemas.commands import DeviceCommandResp

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
