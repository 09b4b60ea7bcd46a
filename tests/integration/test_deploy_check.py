"""``manage.py check --deploy`` as the deploy units run it, with a production environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from broker.signing import generate_signing_key, generate_token
from tests.conftest import ROOT

# Anything of the caller's that the check reads is replaced, so the outcome is the
# defaults' own.
_OURS = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "QSTASH_",
    "SECURE_",
    "SESSION_COOKIE_",
    "CSRF_",
)


def check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(
        DATABASE_URL=os.environ["DATABASE_URL"],
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="qstash.example.com",
        QSTASH_TOKEN=generate_token(),
        QSTASH_CURRENT_SIGNING_KEY=generate_signing_key(),
        QSTASH_NEXT_SIGNING_KEY=generate_signing_key(),
    )
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_environment_passes_check_deploy_without_warnings() -> None:
    result = check_deploy()
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "WARNINGS" not in output and "W0" not in output, output


def test_env_example_placeholder_token_fails_check_deploy_without_printing_it() -> None:
    result = check_deploy(QSTASH_TOKEN="change-me")
    output = result.stdout + result.stderr

    assert result.returncode != 0
    assert "broker.E004" in output and "QSTASH_TOKEN" in output
    assert "change-me" not in output
