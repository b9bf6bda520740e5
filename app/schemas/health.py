"""The health answers."""

from marshmallow import fields, validate

from app.schemas import BaseSchema


class HealthChecks(BaseSchema):
    web = fields.String(required=True, validate=validate.OneOf(["ok"]))
    redis = fields.String(required=True, metadata={"description": '"ok" or "down: <error>"'})
    workers = fields.Integer(
        metadata={"description": "live Celery workers (absent if Redis is down)"}
    )


class HealthAnswer(BaseSchema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded"]))
    checks = fields.Nested(HealthChecks, required=True)
