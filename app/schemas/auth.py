"""Login, refresh and logout bodies and the token answer."""

from marshmallow import fields, validate

from app.schemas import BaseSchema, identifier


class LoginBody(BaseSchema):
    """Documents the login form (the view reads it itself: a missing field answers 102202)."""

    appId = identifier(required=True)
    secret = fields.String(required=True, validate=validate.Length(1, 256))


class RefreshBody(BaseSchema):
    appId = identifier(required=True)
    secret = fields.String(required=True, validate=validate.Length(1, 256))
    refreshToken = fields.String(required=True, validate=validate.Length(1, 256))


class LogoutBody(BaseSchema):
    accessToken = fields.String(required=True, validate=validate.Length(1, 256))


class TokenAnswer(BaseSchema):
    accessToken = fields.String(required=True)
    tokenType = fields.String(required=True, validate=validate.OneOf(["bearer"]))
    expiresIn = fields.Integer(required=True)
    refreshToken = fields.String(required=True)
    scope = fields.String(required=True)
