"""The notification history answer (our extension to the OceanConnect command API)."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, HuaweiTime


class Attempt(BaseSchema):
    time = HuaweiTime(attribute="at")
    httpStatus = fields.Integer(attribute="status", allow_none=True)
    latencyMs = fields.Float()
    error = fields.String(allow_none=True)


class NotificationAnswer(BaseSchema):
    notificationId = fields.String(attribute="id")
    status = fields.String()
    url = fields.String()
    state = fields.String(
        validate=validate.OneOf(["pending", "delivered", "failed", "stopped", "refused"])
    )
    attemptCount = fields.Integer()
    nextAttempt = HuaweiTime(allow_none=True)
    attempts = fields.List(fields.Nested(Attempt))


class NotificationHistory(BaseSchema):
    commandId = fields.String(required=True)
    notifications = fields.List(fields.Nested(NotificationAnswer), required=True)
