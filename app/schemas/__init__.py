"""marshmallow schemas at the HTTP edge: they parse every input and dump every answer."""

from __future__ import annotations

from functools import cache
from urllib.parse import parse_qsl

import orjson
from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from devcmd import clock

MAX_ID = 64
# EnOS names (assetId, productKey, deviceKey): no `/`, which joins productKey and deviceKey.
ENOS_NAME = r"^[A-Za-z0-9_.:@\-]{1,64}$"
PARSED_BODY = "devcmd.form_or_json"  # the WSGI environ key of a login or refresh body, parsed
PARSED_QUERY = "devcmd.query_args"  # ... and of the query strings parsed, per schema


class StrictInteger(fields.Integer):
    """An integer that refuses strings, floats and booleans."""

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)

    def __init__(self, **kwargs) -> None:
        super().__init__(strict=True, **kwargs)


class QueryInteger(fields.Integer):
    """An integer given as a query-string value."""


class HuaweiTime(fields.Field):
    """Epoch milliseconds inside, `yyyyMMdd'T'HHmmss'Z'` outside."""

    default_error_messages = {"invalid": "Not a time of the form yyyyMMdd'T'HHmmss'Z'."}

    def _serialize(self, value, attr, obj, **kwargs):
        return clock.to_huawei(value)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return clock.from_huawei(value)
        except (TypeError, ValueError) as exc:
            raise self.make_error("invalid") from exc


def identifier(**kwargs) -> fields.String:
    return fields.String(validate=validate.Length(1, MAX_ID), **kwargs)


def enos_name(**kwargs) -> fields.String:
    message = "1-64 characters of A-Z a-z 0-9 _ . : @ -"
    return fields.String(validate=validate.Regexp(ENOS_NAME, error=message), **kwargs)


CALLBACK_URL_RULES = (
    "An http or https URL (the scheme in any case) that the command's status changes are POSTed "
    "to, at most 1024 characters; an internationalized host name in its IDNA form (xn--...), "
    "as a Unicode host is refused. Refused too: link-local, metadata, multicast, unspecified and "
    "reserved addresses and metadata host names, and private and loopback ones unless the "
    "service runs with CALLBACK_ALLOW_PRIVATE."
)


def callback_url(**kwargs) -> fields.Url:
    """A callback URL: http(s) only (the document's pattern says so, see app/urlpattern.py);
    the callback guard checks its host when the command is created."""
    return fields.Url(
        load_default=None,
        require_tld=False,
        schemes={"http", "https"},
        validate=validate.Length(max=1024),
        metadata={"description": CALLBACK_URL_RULES},
        **kwargs,
    )


class BaseSchema(Schema):
    """Unknown fields are ignored (OceanConnect clients send what their SDK version knows)."""

    class Meta:
        unknown = EXCLUDE


class PageQuery(BaseSchema):
    pageNo = QueryInteger(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    pageSize = QueryInteger(load_default=1000, validate=validate.Range(1, 1000))
    startTime = HuaweiTime(load_default=0)
    endTime = HuaweiTime(load_default=2**53)


class PageAnswer(BaseSchema):
    """The `pagination` of an OceanConnect list answer."""

    pageNo = fields.Integer(required=True, validate=validate.Range(min=0))
    pageSize = fields.Integer(required=True, validate=validate.Range(1, 1000))
    totalSize = fields.Integer(required=True, validate=validate.Range(min=0))


@cache
def schema(kind: type[Schema], many: bool = False) -> Schema:
    """This process's one instance of `kind`: building a schema deep-copies all its fields
    (about a sixth of a small call's time when done per request). Loading and dumping keep
    no state on the instance, so the request threads share it."""
    return kind(many=many)


def require_json() -> None:
    """Refuse a body declared as anything but JSON (`application/json`, `application/*+json`)
    with 415; a body without a Content-Type is read as JSON."""
    if request.mimetype and not request.is_json:
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype} is not accepted here: send application/json."
        )


def json_body(kind: type[Schema]) -> dict:
    """Parse the request's JSON object with the schema `kind`. Raises UnsupportedMediaType (415) for
    another content type and ValidationError naming the field for anything else."""
    require_json()
    try:
        data = request.get_json(force=True)
    except BadRequest as exc:
        raise ValidationError("is not valid JSON", field_name="body") from exc
    if not isinstance(data, dict):
        raise ValidationError("must be a JSON object", field_name="body")
    return schema(kind).load(data)


def form_or_json() -> dict:
    """The body of a login or refresh: a form (as OceanConnect clients send it) or a JSON
    object. A body without a Content-Type (some OceanConnect clients send none) is read as JSON
    when it parses as a JSON object, else as a form. Another declared type is 415; anything
    unreadable reads as `{}`, so the call is refused for what is missing. Parsed once per
    request: the login limit's key reads it before the view."""
    environ = request.environ  # the request's own: `g` may outlive it in an outer app context
    if PARSED_BODY not in environ:
        environ[PARSED_BODY] = _read_form_or_json()
    return environ[PARSED_BODY]


def _read_form_or_json() -> dict:
    if request.mimetype == "application/x-www-form-urlencoded":
        return request.form.to_dict()
    if request.mimetype:
        require_json()
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}
    raw = request.get_data()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return {}
    return data if isinstance(data, dict) else {}


def optional_json_body(kind: type[Schema]) -> dict:
    """Like `json_body`, but an empty body reads as `{}` (EnOS clients POST without one)."""
    if not request.get_data().strip():
        return schema(kind).load({})
    return json_body(kind)


def query_args(kind: type[Schema]) -> dict:
    """The query string parsed with the schema `kind`, once per request (a read sent along with
    admission and the view then share it: same defaults, such as a window ending now)."""
    parsed = request.environ.setdefault(PARSED_QUERY, {})  # the request's own (see PARSED_BODY)
    if kind not in parsed:
        parsed[kind] = schema(kind).load(request.args.to_dict())
    return parsed[kind]
