"""Device API parameters and bodies."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, QueryInteger
from devcmd.domain.southbound import RESULT_CODES


class FetchQuery(BaseSchema):
    max = QueryInteger(load_default=10, validate=validate.Range(1, 100))


class ResultBody(BaseSchema):
    resultCode = fields.String(required=True, validate=validate.OneOf(RESULT_CODES))
    resultDetail = fields.Raw(load_default=None, allow_none=True)
