from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import jwt
import pytest
from qstash import Receiver
from qstash.errors import SignatureError

from broker.signing import (
    BASE58_ALPHABET,
    SIGNATURE_TTL_SECONDS,
    generate_signing_key,
    generate_token,
    sign_request,
)

CURRENT_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
URL = "https://example.com/api/webhook?x=1"
BASE58 = re.compile(f"[{BASE58_ALPHABET}]+")


def _receiver() -> Receiver:
    return Receiver(current_signing_key=CURRENT_KEY, next_signing_key=NEXT_KEY)


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")

    def decode(segment: str) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return decoded

    return decode(header), decode(payload)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello",
        b'{"hello":"world"}',
        "h\u00e9llo w\u00f6rld \u2603".encode(),
        b"x" * 100_000,
    ],
)
@pytest.mark.parametrize("key", [CURRENT_KEY, NEXT_KEY])
def test_signature_verifies_with_official_receiver(key: str, body: bytes) -> None:
    token = sign_request(signing_key=key, url=URL, body=body)
    _receiver().verify(signature=token, body=body.decode(), url=URL)


def test_signature_verifies_when_receiver_does_not_check_url() -> None:
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"hi")
    _receiver().verify(signature=token, body="hi")


@pytest.mark.parametrize(
    ("key", "body", "url", "now_offset"),
    [
        pytest.param(CURRENT_KEY, "tampered", URL, 0, id="tampered-body"),
        pytest.param(CURRENT_KEY, "original ", URL, 0, id="body-trailing-space"),
        pytest.param(CURRENT_KEY, "original", "https://example.com/other", 0, id="wrong-url"),
        pytest.param(CURRENT_KEY, "original", URL + "&y=2", 0, id="url-extra-query"),
        pytest.param(CURRENT_KEY, "original", URL, -400, id="expired"),
        pytest.param(NEXT_KEY, "original", URL, -400, id="expired-next-key"),
        pytest.param("sig_SomeOtherKeyNotConfigured1", "original", URL, 0, id="unknown-key"),
        pytest.param(CURRENT_KEY, "original", URL, 60, id="issued-in-future"),
    ],
)
def test_signature_is_rejected_by_official_receiver(
    key: str, body: str, url: str, now_offset: int
) -> None:
    token = sign_request(signing_key=key, url=URL, body=b"original", now=time.time() + now_offset)
    with pytest.raises(SignatureError):
        _receiver().verify(signature=token, body=body, url=url)


def test_signature_expires_after_ttl() -> None:
    issued = time.time() - SIGNATURE_TTL_SECONDS + 30
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"x", now=issued)
    _receiver().verify(signature=token, body="x", url=URL)

    stale = time.time() - SIGNATURE_TTL_SECONDS - 30
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"x", now=stale)
    # Receiver reports the error of its last attempt (the next key), which would
    # hide the expiry, so give it the same key twice to see why it failed.
    same_key_twice = Receiver(current_signing_key=CURRENT_KEY, next_signing_key=CURRENT_KEY)
    with pytest.raises(SignatureError, match="expired"):
        same_key_twice.verify(signature=token, body="x", url=URL)


def test_signature_with_tampered_claims_is_rejected() -> None:
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"x")
    header, payload, mac = token.split(".")
    claims = _segments(token)[1]
    claims["sub"] = "https://evil.example/"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(SignatureError):
        _receiver().verify(signature=f"{header}.{forged}.{mac}", body="x")


def test_signature_header_and_claims_match_upstash_format() -> None:
    now = 1_700_000_000.9
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"hello", now=now)
    header, claims = _segments(token)

    assert header == {"alg": "HS256", "typ": "JWT"}
    assert set(claims) == {"iss", "sub", "iat", "nbf", "exp", "jti", "body"}
    assert claims["iss"] == "Upstash"
    assert claims["sub"] == URL
    assert claims["iat"] == 1_700_000_000
    assert claims["nbf"] == 0
    assert claims["exp"] == 1_700_000_000 + SIGNATURE_TTL_SECONDS
    assert claims["body"] == base64.urlsafe_b64encode(hashlib.sha256(b"hello").digest()).decode()
    assert claims["jti"].startswith("jwt_")
    assert len(claims["jti"]) >= 4 + 22
    assert BASE58.fullmatch(claims["jti"][4:])


def test_signature_segments_are_unpadded_compact_json() -> None:
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"")
    assert "=" not in token
    header_segment, payload_segment, _ = token.split(".")
    raw_header = base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4))
    assert raw_header == b'{"alg":"HS256","typ":"JWT"}'
    raw_payload = base64.urlsafe_b64decode(payload_segment + "=" * (-len(payload_segment) % 4))
    assert b": " not in raw_payload and b", " not in raw_payload


def test_signature_hmac_key_is_signing_key_string_bytes() -> None:
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"x")
    signing_input, _, mac = token.rpartition(".")
    expected = hmac.new(CURRENT_KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    assert mac == base64.urlsafe_b64encode(expected).decode().rstrip("=")


def test_signature_decodes_with_pyjwt_and_required_claims() -> None:
    token = sign_request(signing_key=CURRENT_KEY, url=URL, body=b"x")
    claims = jwt.decode(
        token,
        CURRENT_KEY,
        algorithms=["HS256"],
        issuer="Upstash",
        subject=URL,
        options={"require": ["iss", "sub", "iat", "exp", "nbf", "jti"]},
    )
    assert claims["sub"] == URL


def test_each_signature_has_a_unique_jti() -> None:
    jtis = {
        _segments(sign_request(signing_key=CURRENT_KEY, url=URL, body=b"x", now=1.0))[1]["jti"]
        for _ in range(200)
    }
    assert len(jtis) == 200


def test_generate_signing_key_is_sig_prefixed_base58() -> None:
    key = generate_signing_key()
    assert key.startswith("sig_")
    assert len(key) == 4 + 28
    assert BASE58.fullmatch(key[4:])


def test_generated_signing_keys_are_unique_and_verify_with_receiver() -> None:
    keys = {generate_signing_key() for _ in range(100)}
    assert len(keys) == 100
    current, upcoming = generate_signing_key(), generate_signing_key()
    token = sign_request(signing_key=upcoming, url=URL, body=b"rotated")
    Receiver(current_signing_key=current, next_signing_key=upcoming).verify(
        signature=token, body="rotated", url=URL
    )


def test_base58_alphabet_excludes_ambiguous_characters() -> None:
    assert len(BASE58_ALPHABET) == 58
    assert not set("0OIl") & set(BASE58_ALPHABET)


def test_generate_token_is_url_safe_and_unique() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) == 43
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
