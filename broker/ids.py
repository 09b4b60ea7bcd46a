"""Public identifiers: a prefix and random base58, never the integer primary key."""

from __future__ import annotations

import secrets

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def random_base58(length: int) -> str:
    return "".join(secrets.choice(BASE58) for _ in range(length))


def new_message_id() -> str:
    return "msg_" + random_base58(26)
