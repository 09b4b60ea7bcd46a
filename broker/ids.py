"""Public identifiers: a prefix and random base58, never the integer primary key."""

from __future__ import annotations

import os

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def random_base58(length: int) -> str:
    """``length`` random base58 characters from one ``os.urandom`` call.

    ``secrets.choice`` per character made a system call each, which showed in
    the delivery profile (a fresh JWT id per attempt). The low ``length`` base58
    digits of ``8 * length`` random bits are uniform to within 2**-100.
    """
    number = int.from_bytes(os.urandom(length), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 58)
        chars.append(BASE58[digit])
    return "".join(chars)


def new_message_id() -> str:
    return "msg_" + random_base58(26)
