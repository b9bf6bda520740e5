"""Time helpers: epoch milliseconds inside, `yyyyMMdd'T'HHmmss'Z'` at the OceanConnect edge."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache

HUAWEI_FORMAT = "%Y%m%dT%H%M%SZ"


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
    parsed = datetime.strptime(text, HUAWEI_FORMAT).replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
