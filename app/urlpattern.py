"""The OpenAPI pattern of a marshmallow URL field: what `validate.URL` accepts, written for JSON
Schema, whose patterns take no flags (so every letter is given in both cases) and read `\\d` as
ASCII digits. `format: uri` alone would admit any scheme and hosts the validator refuses.

Transcribed from marshmallow's `URL._regex` for absolute URLs (tests/unit/test_openapi.py holds
the two to the same answers); the port is bounded to 65535 as the callback guard bounds it."""

from __future__ import annotations

import re

from marshmallow import validate

# marshmallow's A-Z in any case; the non-ASCII letters it also takes are refused by the callback
# guard (an internationalized host is sent in its IDNA form, xn--...)
LETTERS = "A-Za-z"
LABEL = rf"[0-9{LETTERS}](?:[0-9{LETTERS}-]{{0,61}}[0-9{LETTERS}])?"
USERINFO = r"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*@)?"
PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[0-5]?[0-9]{1,4}))?"
TAIL = r"(?:/?|[/?#]\S+)$"


def url_pattern(validator: validate.URL) -> str:
    """The pattern of the strings `validator` (absolute URLs only) accepts."""
    hosts = [
        rf"(?:{LABEL}\.)+(?:[{LETTERS}]{{2,6}}\.?|[0-9{LETTERS}-]{{2,}}\.?)",
        any_case("localhost"),
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        r"\[[A-Fa-f0-9]*:[A-Fa-f0-9:]+\]",
    ]
    if not validator.require_tld:
        hosts.append(rf"{LABEL}\.?")
    schemes = "|".join(any_case(s) for s in sorted(validator.schemes))
    return rf"^(?:{schemes})://{USERINFO}(?:{'|'.join(hosts)}){PORT}{TAIL}"


def any_case(text: str) -> str:
    """A regular expression matching `text` in any case."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in text)
