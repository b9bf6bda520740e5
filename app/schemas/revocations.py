"""Revocation task body, query parameters and answers."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime, PageQuery, identifier

TASK_STATUSES = ["WAITING", "WAITTING", "RUNNING", "SUCCESS", "PART_SUCCESS", "FAILED"]


class CreateTaskBody(BaseSchema):
    deviceId = identifier(required=True)


class TasksQuery(PageQuery):
    taskId = identifier(load_default=None)
    deviceId = identifier(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(TASK_STATUSES))


class TaskAnswer(BaseSchema):
    """OceanConnect's revocation task, plus progress fields (our documented extension)."""

    taskId = fields.String()
    appId = fields.String()
    deviceId = fields.String()
    status = fields.String()
    totalCount = fields.Integer()
    cancelledCount = fields.Integer()
    reason = fields.String()
    creationTime = HuaweiTime()
    startTime = HuaweiTime()
    finishTime = HuaweiTime()
