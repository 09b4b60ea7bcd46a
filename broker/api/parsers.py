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


def check_document(data: Any, *, max_depth: int) -> None:
    """Raise ParseError for nesting deeper than ``max_depth`` or a NUL/surrogate string."""
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
        check_document(data, max_depth=settings.QSTASH_MAX_JSON_DEPTH)
        return data
