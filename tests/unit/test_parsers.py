"""StrictJSONParser: every NUL or lone surrogate refused, however the document spells it, and
the field at fault named (issue 10 skips the string scan only where none can be)."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from rest_framework.exceptions import ParseError

from broker.api.parsers import StrictJSONParser, escapes_possible


def parse(raw: bytes) -> object:
    return StrictJSONParser().parse(io.BytesIO(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'[{"body": "a\\u0000b"}]',  # an escaped NUL
        b'[{"body": "\\ud800"}]',  # an escaped lone surrogate
        b'[{"body": "\xed\xa0\x80"}]',  # a surrogate in raw UTF-8 (json reads surrogatepass)
        b'[{"\\u0000": 1}]',  # in a key
    ],
)
def test_a_nul_or_surrogate_is_refused_with_its_field(raw: bytes) -> None:
    assert escapes_possible(raw)
    with pytest.raises(ParseError, match=r"\[0\]|key in \[0\]"):
        parse(raw)


def test_a_plain_ascii_document_skips_the_scan_and_keeps_its_strings() -> None:
    raw = json.dumps([{"destination": "http://127.0.0.1/x", "body": '{"a":1}'}] * 100).encode()
    assert not escapes_possible(raw)
    assert parse(raw) == json.loads(raw)


def test_depth_is_checked_whatever_the_strings_and_the_path_is_named() -> None:
    depth = settings.QSTASH_MAX_JSON_DEPTH
    raw = ("[" * (depth + 2) + "]" * (depth + 2)).encode()
    assert not escapes_possible(raw)
    with pytest.raises(ParseError, match=r"nested deeper than \d+ levels at \[0\]"):
        parse(raw)
    assert parse(("[" * depth + "]" * depth).encode()) is not None
