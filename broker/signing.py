"""The `Upstash-Signature` JWT, plus random signing keys and API tokens.

HS256 is done by hand with hmac/hashlib: one token is minted per delivery
attempt, and the format is small and fixed, so a JWT library buys nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from broker.ids import BASE58, random_base58

__all__ = [
    "BASE58_ALPHABET",
    "SIGNATURE_TTL_SECONDS",
    "generate_signing_key",
    "generate_token",
    "sign_request",
]

SIGNATURE_TTL_SECONDS = 300

BASE58_ALPHABET = BASE58

_SIGNING_KEY_LENGTH = 28
_JTI_LENGTH = 28

# The header never changes, so encode it once.
_HEADER_SEGMENT = base64.urlsafe_b64encode(
    json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()
).rstrip(b"=")


def _b64url(data: bytes) -> bytes:
    # JWS segments are unpadded (RFC 7515 section 2); PyJWT accepts either, jose does not.
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign_request(*, signing_key: str, url: str, body: bytes, now: float | None = None) -> str:
    """Return the `Upstash-Signature` JWT for sending `body` to `url`.

    Valid for SIGNATURE_TTL_SECONDS from `now` (default: the current time).
    """
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": issued_at,
        # Upstash sends nbf=0 (changelog, Sep 2024) so a receiver whose clock
        # runs slow does not reject fresh tokens; PyJWT's required-claim check
        # only rejects a missing or null nbf, so 0 passes.
        "nbf": 0,
        "exp": issued_at + SIGNATURE_TTL_SECONDS,
        "jti": "jwt_" + random_base58(_JTI_LENGTH),
        # Padding kept, as in Upstash's documented example; receivers strip it.
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode(),
    }
    payload_segment = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HEADER_SEGMENT + b"." + payload_segment
    # The key string's own UTF-8 bytes are the HMAC key, not a decoded form.
    mac = hmac.new(signing_key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64url(mac)).decode()


def generate_signing_key() -> str:
    """A new signing key: "sig_" followed by 28 random base58 characters."""
    return "sig_" + random_base58(_SIGNING_KEY_LENGTH)


def generate_token() -> str:
    """A new opaque API token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)
