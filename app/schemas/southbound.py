"""Device API parameters and bodies."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, QueryInteger
from devcmd.domain.southbound import RESULT_CODES


class FetchQuery(BaseSchema):
    max = QueryInteger(load_default=10, validate=validate.Range(1, 100))


class ResultBody(BaseSchema):
    resultCode = fields.String(required=True, validate=validate.OneOf(RESULT_CODES))
    resultDetail = fields.Raw(load_default=None, allow_none=True)


class SouthboundCommand(BaseSchema):
    commandId = fields.String(required=True)
    serviceId = fields.String(required=True)
    method = fields.String(required=True)
    paras = fields.Dict(keys=fields.String(), required=True)


class FetchAnswer(BaseSchema):
    """The next commands in queue order; each is now SENT."""

    commands = fields.List(fields.Nested(SouthboundCommand), required=True)
