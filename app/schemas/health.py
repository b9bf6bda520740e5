"""The health answers: `/healthz` (liveness) and `/readyz` (readiness), each check with detail."""

from marshmallow import fields, validate

from app.schemas import BaseSchema


class Check(BaseSchema):
    """One check: `ok`, plus what it measured (latencyMs, alive, depth and limit per queue...)
    or `error` / `skipped`."""

    class Meta:
        unknown = "include"

    ok = fields.Boolean(required=True)
    error = fields.String()
    skipped = fields.String()


class LivenessChecks(BaseSchema):
    web = fields.Nested(Check, required=True)


class ReadinessChecks(BaseSchema):
    redis = fields.Nested(Check, required=True)
    broker = fields.Nested(Check, required=True)
    workers = fields.Nested(Check, required=True)
    queues = fields.Nested(Check, required=True)


class LivenessAnswer(BaseSchema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))
    checks = fields.Nested(LivenessChecks, required=True)


class ReadinessAnswer(BaseSchema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    checks = fields.Nested(ReadinessChecks, required=True)
