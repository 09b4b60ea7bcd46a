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
    assert parse_notification(payload) == (ids, count)
