from __future__ import annotations

import pytest

from broker.wakeup import parse_notification


@pytest.mark.parametrize(
    ("payload", "ids", "count"),
    [
        ("1,2,3", [1, 2, 3], 0),
        ("42", [42], 0),
        ("7,7", [7, 7], 0),
        ("1,,2,", [1, 2], 0),
        ("", [], 0),
        ("*450", [], 450),
        ("*1", [], 1),
        ("*0", [], 0),
    ],
)
def test_parse_notification_gives_ids_or_an_anonymous_count(
    payload: str, ids: list[int], count: int
) -> None:
    assert parse_notification(payload) == (ids, count, None)


@pytest.mark.parametrize(
    ("payload", "due"), [("@1764320000.25", 1764320000.25), ("@1764320000", 1764320000.0)]
)
def test_parse_notification_gives_an_announced_due_time(payload: str, due: float) -> None:
    assert parse_notification(payload) == ([], 0, due)
