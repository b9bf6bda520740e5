"""The CI-sized soak (bench/soak.py): under a steady load of creating, delivering, cancelling
and revoking with a one-second retention, Redis memory levels off and every task's counts are
exact. About 30 seconds, on its own fresh server (no other test's data in its used_memory)."""

from __future__ import annotations

import pytest

from bench import soak
from devcmd.embedded import temporary_server

pytestmark = pytest.mark.integration


def test_memory_levels_off_under_a_steady_load_with_short_retention():
    lines: list[str] = []
    with temporary_server() as server:
        result = soak.run(server.url, 30, rate=200, device_count=20, keep=1.0, every=0.5,
                          report=lines.append)  # fmt: skip
    assert result.inexact_tasks == []
    assert result.counts["tasks"] > 5
    assert result.counts["delivered"] > 100
    assert result.growth < soak.LEVEL_OFF, lines
