"""The admission script (devcmd/store/lua/admit_call.lua) on a fixed clock: the sliding-window
count, per-limit counts, and refusals that count nothing."""

from __future__ import annotations

import pytest

from devcmd.domain import auth
from devcmd.store.auth import Admission

MINUTE = 60_000
START = 1_000 * MINUTE  # the start of a minute


@pytest.fixture
def apps(svc):
    auth.create_application(svc, app_id="app-a", secret="s")
    return svc.apps


def admit(apps, at: int, limit: int = 4) -> Admission:
    return apps.admit("app-a", at, limit, "")


def test_a_minute_admits_its_limit_then_refuses_without_counting(apps):
    assert [admit(apps, START + i).code for i in range(5)] == [0, 0, 0, 0, 4]
    assert admit(apps, START + 10).weighted_milli == 4000  # the refusals added nothing


def test_the_previous_minute_counts_by_its_overlap_with_the_last_60_seconds(apps):
    for i in range(4):
        admit(apps, START + i)
    # A quarter into the next minute, 3/4 of the previous minute's 4 calls still count: 3.
    first = admit(apps, START + MINUTE + MINUTE // 4)
    assert (first.code, first.weighted_milli) == (0, 4000)
    assert admit(apps, START + MINUTE + MINUTE // 4).code == Admission.OVER_BUDGET
    # Three quarters in, only one of them: two more calls fit.
    late = [admit(apps, START + MINUTE + 3 * MINUTE // 4).code for _ in range(3)]
    assert late == [0, 0, Admission.OVER_BUDGET]


def test_two_minutes_later_the_budget_is_whole_again(apps):
    for i in range(4):
        admit(apps, START + i)
    assert [admit(apps, START + 2 * MINUTE).code for _ in range(4)] == [0, 0, 0, 0]


def test_each_limit_keeps_its_own_count(apps):
    for i in range(4):
        admit(apps, START + i, limit=4)
    assert admit(apps, START + 5, limit=6).weighted_milli == 1000  # a fresh count
    assert admit(apps, START + 6, limit=4).code == Admission.OVER_BUDGET  # its own, still full


def test_zero_means_unlimited_and_counts_nothing(apps, svc):
    assert {admit(apps, START + i, limit=0).code for i in range(10)} == {0}
    assert svc.redis.exists("dc:limits:{app-a}:northbound") == 0


def test_a_stale_version_or_a_frozen_app_counts_nothing(apps, svc):
    assert apps.admit("app-a", START, 4, "stale").code == Admission.STALE
    svc.apps.update("app-a", {"frozen": "1"})
    assert admit(apps, START).code == Admission.FROZEN
    assert svc.redis.exists("dc:limits:{app-a}:northbound") == 0


def test_the_budget_keeps_two_minutes_of_counts_and_expires_after_them(apps, svc):
    budget = "dc:limits:{app-a}:northbound"
    for minute in range(3):
        for i in range(3):
            assert admit(apps, START + minute * MINUTE + i, limit=10).code == 0
    # The minute before last is dropped by this minute's first call; the last two are read.
    assert svc.redis.hgetall(budget) == {"10:1001": "3", "10:1002": "3"}
    assert 0 < svc.redis.pttl(budget) <= 2 * MINUTE
