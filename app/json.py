"""Flask's JSON provider backed by orjson: list answers carry up to 1,000 commands."""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import JSONProvider


class OrjsonProvider(JSONProvider):
    """Dumps with orjson (keys in insertion order, as the wire format lists them).

    Requests are parsed with the standard library: orjson would silently turn integers beyond
    64 bits into floats, and a client's input must arrive exactly or be refused.
    """

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Raises ValueError for invalid JSON, also for nesting too deep for the parser
        (a 1 MiB body can nest 500,000 levels)."""
        try:
            return json.loads(s)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj), mimetype="application/json")
