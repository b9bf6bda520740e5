"""OceanConnect times: the documented pattern and the parser accept exactly the real seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devcmd.clock import HUAWEI_PATTERN, from_huawei, to_huawei


def real_second(text: str) -> bool:
    """Whether 14 digits around T and Z name a real UTC second (datetime's own rules)."""
    y, mo, d, h, mi, s = (
        int(text[a:b]) for a, b in ((0, 4), (4, 6), (6, 8), (9, 11), (11, 13), (13, 15))
    )
    try:
        datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except ValueError:
        return False
    return True


def parses(text: str) -> bool:
    try:
        from_huawei(text)
    except ValueError:
        return False
    return True


# Mostly plausible fields, so real and impossible dates (Feb 29, day 31, hour 24) both come up.
stamps = st.builds(
    "{:04d}{:02d}{:02d}T{:02d}{:02d}{:02d}Z".format,
    st.integers(0, 9999) | st.sampled_from([1900, 2000, 2016, 2017, 2100, 2400]),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
)


@given(stamps)
def test_the_pattern_and_the_parser_accept_exactly_the_real_seconds(text):
    expected = real_second(text)
    assert bool(re.fullmatch(HUAWEI_PATTERN, text)) is expected
    assert parses(text) is expected
    if expected and text >= "1970":  # answers carry times since the epoch
        assert to_huawei(from_huawei(text)) == text


@pytest.mark.parametrize(
    "text",
    ["2017111T000000Z", "2017 1 1T000000Z", "20170222T164000Z\n", "20170229T000000Z", "", None],
)
def test_what_strptime_alone_would_take_or_no_date_is_refused(text):
    assert not parses(text)


def test_leap_days_follow_the_gregorian_rules():
    assert [parses(f"{y}0229T000000Z") for y in (2016, 2000, 1900, 2017, 2100)] == [
        True, True, False, False, False,
    ]  # fmt: skip
