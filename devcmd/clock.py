"""Time helpers: epoch milliseconds inside, `yyyyMMdd'T'HHmmss'Z'` at the OceanConnect edge."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from functools import lru_cache

HUAWEI_FORMAT = "%Y%m%dT%H%M%SZ"
# Exactly the strings HUAWEI_FORMAT reads as a real UTC second of years 0001-9999 (strptime alone
# takes `2017111T...` too), so the OpenAPI document's pattern and the parser agree.
_YEAR = r"(?:\d{3}[1-9]|\d\d[1-9]\d|\d[1-9]\d\d|[1-9]\d{3})"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0[469]|11)(?:0[1-9]|[12]\d|30)"
    r"|02(?:0[1-9]|1\d|2[0-8]))"
)
_LEAP_DAY = r"(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)0229"
HUAWEI_PATTERN = rf"^(?:{_YEAR}{_MONTH_DAY}|{_LEAP_DAY})T(?:[01]\d|2[0-3])[0-5]\d[0-5]\dZ$"
_HUAWEI = re.compile(HUAWEI_PATTERN, re.ASCII)


def now_ms() -> int:
    return int(time.time() * 1000)


def to_huawei(ms: int | str | None) -> str | None:
    """Render epoch milliseconds as OceanConnect's UTC time string, or None."""
    if ms is None or ms == "":
        return None
    return _huawei_second(int(ms) // 1000)


@lru_cache(maxsize=4096)
def _huawei_second(seconds: int) -> str:
    # Commands listed together were mostly created in the same few seconds: format each once.
    return datetime.fromtimestamp(seconds, UTC).strftime(HUAWEI_FORMAT)


def from_huawei(text: str) -> int:
    """Parse `20170222T164000Z` into epoch milliseconds; raises ValueError on anything else."""
    if not isinstance(text, str) or not _HUAWEI.fullmatch(text):
        raise ValueError(f"not a time of the form yyyyMMdd'T'HHmmss'Z': {text!r}")
    parsed = datetime.strptime(text, HUAWEI_FORMAT).replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
