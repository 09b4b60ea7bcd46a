"""The API's one JSON parser: bounded nesting, and text PostgreSQL can store.

Python's json module recurses once per level and accepts ``\\u0000`` and lone
surrogate escapes; a deep document would end in a RecursionError (a 500), and
such strings in a 500 at write or render time. Both are a 400 here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

_BAD = re.compile(r"[\x00\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _field(path: list[str | int]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".") or "body"


def _sound(data: Any, max_depth: int, strings: bool) -> bool:
    """Whether ``data`` passes ``check_document``, without building any field path."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    bad = _BAD.search
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            return False
        if isinstance(value, str):
            if strings and bad(value):
                return False
        elif isinstance(value, dict):
            if strings and any(bad(key) for key in value):
                return False
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return True


def check_document(data: Any, *, max_depth: int, strings: bool = True) -> None:
    """Raise ParseError for nesting deeper than ``max_depth`` or a NUL/surrogate string.

    ``strings=False`` when the raw document cannot hold one (``escapes_possible``).
    The walk that names the field at fault runs only for a document that fails: a
    path per value was most of the check's time on a batch of 100 (issue 10).
    """
    if _sound(data, max_depth, strings):
        return
    stack: list[tuple[Any, list[str | int]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > max_depth:
            raise ParseError(f"nested deeper than {max_depth} levels at {_field(path)}")
        if isinstance(value, str):
            if _BAD.search(value):
                raise ParseError(f"{_field(path)} holds a NUL character or invalid unicode")
        elif isinstance(value, dict):
            for key, item in value.items():
                if _BAD.search(key):
                    raise ParseError(f"a key in {_field(path)} holds a NUL or invalid unicode")
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, index]) for index, item in enumerate(value))


def escapes_possible(raw: bytes) -> bool:
    """Whether a document parsed from ``raw`` can hold a NUL or a lone surrogate.

    Only an escape (``\\u0000``, ``\\ud800``) can put one in a document that is
    plain ASCII without NUL bytes: json.loads reads such bytes as UTF-8 and refuses
    raw control characters in strings, and ASCII encodes no surrogate.
    """
    return not raw.isascii() or b"\\u" in raw or b"\x00" in raw


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            data = json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError:
            raise ParseError("nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ParseError(str(exc)) from None
        check_document(
            data, max_depth=settings.QSTASH_MAX_JSON_DEPTH, strings=escapes_possible(raw)
        )
        return data
