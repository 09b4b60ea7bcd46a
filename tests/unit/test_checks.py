"""The production system checks (broker/checks.py): ids, and no secret in the output."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management.utils import get_random_secret_key

from broker.checks import check_debug_off, check_production_settings, weakness
from broker.services.credentials import DEV_TOKEN
from broker.signing import generate_signing_key, generate_token

CREDENTIALS = ("QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")


@pytest.fixture
def production(settings: Any) -> Any:
    """Settings that pass every check, as a generated deployment would have them."""
    settings.DEBUG = False
    settings.SECRET_KEY = get_random_secret_key()
    settings.QSTASH_TOKEN = generate_token()
    settings.QSTASH_CURRENT_SIGNING_KEY = generate_signing_key()
    settings.QSTASH_NEXT_SIGNING_KEY = generate_signing_key()
    return settings


def output(errors: list[Any]) -> str:
    return " ".join(f"{e.msg} {e.hint}" for e in errors)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("change-me", "a placeholder"),
        ("sig_change-me-current", "a placeholder"),
        ("sig_CHANGEME_0123456789abcdefghijklmnop", "a placeholder"),
        ("your-token-goes-here-0123456789abcdefgh", "a placeholder"),
        ("sig_XXXXXXXXXXXXXXXXXXXXXXXXXXXX", "a placeholder"),
        ("an-example-value-that-is-long-enough-0123", "a placeholder"),
        ("sig_short", "shorter than 32 characters"),
        ("a" * 31, "shorter than 32 characters"),
        ("a" * 32, None),
        ("sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r", None),  # generated keys are exactly 32
    ],
)
def test_weakness_names_placeholders_and_short_values(value: str, expected: str | None) -> None:
    assert weakness(value) == expected


def test_generated_credentials_and_a_random_secret_key_pass(production: Any) -> None:
    assert check_production_settings() == []
    assert check_debug_off() == []


def test_empty_credentials_pass_because_they_are_generated_and_stored(production: Any) -> None:
    for name in CREDENTIALS:
        setattr(production, name, "")

    assert check_production_settings() == []


@pytest.mark.parametrize("name", CREDENTIALS)
@pytest.mark.parametrize(
    "value", ["change-me", "sig_change-me-next", "sig_short", "placeholder-" + "0" * 30]
)
def test_weak_credential_is_refused_by_name_without_printing_it(
    production: Any, name: str, value: str
) -> None:
    setattr(production, name, value)

    errors = check_production_settings()

    assert [e.id for e in errors] == ["broker.E004"]
    assert errors[0].msg.startswith(f"{name} is ")
    assert value not in output(errors)


def test_each_weak_credential_gets_its_own_error(production: Any) -> None:
    production.QSTASH_TOKEN = "change-me"
    production.QSTASH_NEXT_SIGNING_KEY = "sig_change-me-next"

    errors = check_production_settings()

    assert [(e.id, e.msg.split()[0]) for e in errors] == [
        ("broker.E004", "QSTASH_TOKEN"),
        ("broker.E004", "QSTASH_NEXT_SIGNING_KEY"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "change-me",
        "django-insecure-qstash-selfhosted-development-only",  # the built-in default
        "changeme-" + "k" * 50,
        "short-but-random-7Q",
    ],
)
def test_weak_secret_key_is_refused_without_printing_it(production: Any, value: str) -> None:
    production.SECRET_KEY = value

    errors = check_production_settings()

    assert [e.id for e in errors] == ["broker.E001"]
    assert value not in output(errors)


def test_public_dev_token_is_refused(production: Any) -> None:
    production.QSTASH_TOKEN = DEV_TOKEN

    errors = check_production_settings()

    assert [e.id for e in errors] == ["broker.E002"]
    assert DEV_TOKEN not in output(errors)


def test_debug_allows_placeholders_but_deploy_check_refuses_debug(production: Any) -> None:
    production.DEBUG = True
    production.SECRET_KEY = "change-me"
    production.QSTASH_TOKEN = "change-me"

    assert check_production_settings() == []
    assert [e.id for e in check_debug_off()] == ["broker.E003"]
