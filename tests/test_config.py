"""CE_ENV=production refuses every development default and every weak secret, naming each."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from app.config import ProductionSafetyError, Settings, check_production_safety

STRONG = {
    "jwt_secret": "j" * 32,
    "oauth_state_secret": "s" * 32,
    "vault_keys": "prod1:cHJvZHVjdGlvbi12YXVsdC1rZXktMzItYnl0ZXMtMDA=",
    "tracking_token_secret": "t" * 32,
    "gmail_push_secret": "g" * 32,
    "outlook_client_state_secret": "o" * 32,
    "gmail_client_secret": "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",
    "outlook_client_secret": "a-real-looking-entra-client-secret",
    "ce_app_db_password": "p" * 32,
}


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"ce_env": "production", "ce_sandbox": False, **STRONG, **overrides}
    for name, value in values.items():
        if isinstance(value, str) and name in STRONG:
            values[name] = SecretStr(value)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _refused(settings: Settings) -> str:
    with pytest.raises(ProductionSafetyError) as refused:
        check_production_safety(settings)
    return str(refused.value)


def test_production_with_real_secrets_starts() -> None:
    check_production_safety(_settings())


DEVELOPMENT_DEFAULTS = [
    "JWT_SECRET",
    "OAUTH_STATE_SECRET",
    "VAULT_KEYS",
    "TRACKING_TOKEN_SECRET",
    "GMAIL_PUSH_SECRET",
    "OUTLOOK_CLIENT_STATE_SECRET",
    "GMAIL_CLIENT_SECRET",
    "OUTLOOK_CLIENT_SECRET",
    "CE_APP_DB_PASSWORD",
]


@pytest.mark.parametrize("variable", DEVELOPMENT_DEFAULTS)
def test_each_development_default_is_refused_by_name(variable: str) -> None:
    default = Settings.model_fields[variable.lower()].default
    message = _refused(_settings(**{variable.lower(): default}))
    assert variable in message
    assert [name for name in DEVELOPMENT_DEFAULTS if name in message] == [variable]


def test_all_defaults_are_named_in_one_error() -> None:
    message = _refused(Settings(_env_file=None, ce_env="production"))  # type: ignore[call-arg]
    for variable in DEVELOPMENT_DEFAULTS:
        assert variable in message


@pytest.mark.parametrize(
    "variable",
    [
        "JWT_SECRET",
        "OAUTH_STATE_SECRET",
        "TRACKING_TOKEN_SECRET",
        "GMAIL_PUSH_SECRET",
        "OUTLOOK_CLIENT_STATE_SECRET",
        "CE_APP_DB_PASSWORD",
        "METRICS_TOKEN",
    ],
)
def test_a_secret_shorter_than_32_bytes_is_refused(variable: str) -> None:
    message = _refused(_settings(**{variable.lower(): SecretStr("x" * 31)}))
    assert variable in message
    assert "32 bytes" in message


def test_32_bytes_counts_bytes_not_characters() -> None:
    check_production_safety(_settings(gmail_push_secret=SecretStr("é" * 16)))  # 32 bytes
    assert "GMAIL_PUSH_SECRET" in _refused(_settings(gmail_push_secret=SecretStr("é" * 15)))


def test_the_development_vault_key_is_refused_anywhere_in_the_ring() -> None:
    dev_key = Settings.model_fields["vault_keys"].default.get_secret_value()
    ring = f"{STRONG['vault_keys']},{dev_key}"
    assert "VAULT_KEYS" in _refused(_settings(vault_keys=SecretStr(ring)))


def test_the_sandbox_is_refused() -> None:
    assert "CE_SANDBOX" in _refused(_settings(ce_sandbox=True))


def test_jwks_makes_the_shared_jwt_secret_unused() -> None:
    default = Settings.model_fields["jwt_secret"].default
    check_production_safety(
        _settings(jwt_secret=default, jwt_jwks_url="https://idp.example/jwks.json")
    )


def test_an_app_database_url_makes_the_ce_app_password_unused() -> None:
    default = Settings.model_fields["ce_app_db_password"].default
    check_production_safety(
        _settings(
            ce_app_db_password=default,
            app_database_url="postgresql://ce_app:secret-from-the-vault@db/ce",
        )
    )


@pytest.mark.parametrize("environment", ["development", "test"])
def test_outside_production_the_defaults_are_fine(environment: str) -> None:
    check_production_safety(Settings(_env_file=None, ce_env=environment))  # type: ignore[call-arg]
