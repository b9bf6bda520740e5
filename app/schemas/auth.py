"""Login, refresh and logout bodies and the token answer."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, identifier


class RefreshBody(BaseSchema):
    appId = identifier(required=True)
    secret = fields.String(required=True, validate=validate.Length(1, 256))
    refreshToken = fields.String(required=True, validate=validate.Length(1, 256))


class LogoutBody(BaseSchema):
    accessToken = fields.String(required=True, validate=validate.Length(1, 256))


class TokenAnswer(BaseSchema):
    accessToken = fields.String()
    tokenType = fields.String()
    expiresIn = fields.Integer()
    refreshToken = fields.String()
    scope = fields.String()
