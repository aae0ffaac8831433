"""``parse_range``: which Range headers the staff API honours (RFC 9110 §14), as a table."""

from __future__ import annotations

import pytest

from dropbox_server.staff import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("bytes=2-", (2, 9)),
    ("bytes=2-4", (2, 4)),
    ("bytes=0-0", (0, 0)),
    ("bytes=9-", (9, 9)),
    ("bytes=3-100", (3, 9)),          # the end is clipped to the file
    ("bytes=-3", (7, 9)),             # suffix: the last three bytes
    ("bytes=-30", (0, 9)),
    ("bytes=0-1,3-4", None),          # several ranges: the whole file instead
    ("bytes=5-2", None),              # invalid: ignored
    ("bytes=-", None),
    ("bytes=a-", None),
    ("lines=1-2", None),
])
def test_honoured_ranges(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)
