"""Secrets inside connection strings: ODBC `PWD=`, libpq DSNs and URL query parameters."""

from __future__ import annotations

import pytest

from millpond.core.config import MillpondConfig
from millpond.core.masking import inline_secrets, mask_inline


@pytest.mark.parametrize(
    ("text", "secret", "masked"),
    [
        ("Driver={X};Server=h;PWD=hunter2;Uid=u", "hunter2", "Driver={X};Server=h;PWD=***;Uid=u"),
        ("Driver={X};pwd={a;b c};", "a;b c", "Driver={X};pwd=***;"),
        ("host=h password=s3cr3t dbname=d", "s3cr3t", "host=h password=*** dbname=d"),
        ("https://api/x?api_key=k3y&page=2", "k3y", "https://api/x?api_key=***&page=2"),
    ],
)
def test_secret_pairs_are_found_and_masked(text: str, secret: str, masked: str) -> None:
    assert inline_secrets(text) == [secret]
    assert mask_inline(text) == masked


def test_words_that_merely_end_like_a_key_are_left_alone() -> None:
    text = "Server=h;NoPWD=1;mytoken_count=3"
    assert inline_secrets(text) == [] and mask_inline(text) == text


def test_config_secrets_include_passwords_inside_connection_strings() -> None:
    from millpond.core.config import config_model

    config: MillpondConfig = config_model().model_validate(
        {
            "sources": {
                "erp": {
                    "kind": "odbc",
                    "connection_string": "Driver={X};PWD=odbc-pw-1;",
                    "tables": ["a"],
                }
            }
        }
    )
    assert "odbc-pw-1" in config.secrets()
    assert "odbc-pw-1" not in str(config.masked())


# --- one policy for everything a source, target, notifier or dbt var can hold ----------------

# Each secret appears once in the config below; none may survive `masked()`, all must be in
# `secrets()` (so logs, the ledger and dbt's files mask them too).
POLICY_SECRETS = {
    "bearer": "bearer-tok-1a2b3c",
    "api_key_value": "apikey-val-4d5e6f",
    "basic_user": "basic-user-7a8b",
    "basic_password": "basic-pw-9c0d1e",
    "authorization_header": "hdr-auth-2f3a4b",
    "x_api_key_header": "hdr-xkey-5c6d7e",
    "cookie": "cookie-val-8f9a0b",
    "custom_token_header": "hdr-tok-1c2d3e",
    "query_token": "qry-tok-4f5a6b",
    "sql_password": "sql-pw-7c8d9e",
    "odbc_password": "odbc-pw-0f1a2b",
    "s3_secret": "s3-secret-3c4d5e",
    "warehouse_password": "wh-pw-6f7a8b",
    "webhook_token": "T0AAAAAAA/B0BBBBBBB/whk0tokenXYZ123abc",
    "salt": "salt-val-9c0d1e",
    "dbt_token": "dbt-tok-2f3a4b",
}


def policy_config() -> MillpondConfig:
    from millpond.core.config import config_model

    s = POLICY_SECRETS
    return config_model().model_validate(
        {
            "warehouse": {
                "target": "postgres",
                "url": f"postgresql://app:{s['warehouse_password']}@db/dw",
            },
            "dbt": {
                "vars": {"salt": s["salt"], "api_token": s["dbt_token"], "region": "eu"},
                "secret_vars": ["salt"],
            },
            "notify": [{"webhook": f"https://hooks.slack.com/services/{s['webhook_token']}"}],
            "sources": {
                "crm": {
                    "kind": "rest",
                    "base_url": "https://api.example.com/v1",
                    "auth": {
                        "type": "api_key",
                        "name": "X-Client-Key",
                        "value": s["api_key_value"],
                    },
                    "headers": {
                        "Accept": "application/json",
                        "Authorization": f"Token {s['authorization_header']}",
                        "X-API-Key": s["x_api_key_header"],
                        "Cookie": f"sid={s['cookie']}",
                        "X-Custom-Token": s["custom_token_header"],
                    },
                    "tables": {
                        "a": {
                            "path": "/a",
                            "params": {"access_token": s["query_token"], "page_size": 5},
                        }
                    },
                },
                "crm2": {
                    "kind": "rest",
                    "base_url": "https://x.example",
                    "auth": {"type": "bearer", "token": s["bearer"]},
                    "tables": {"a": {"path": "/a"}},
                },
                "crm3": {
                    "kind": "rest",
                    "base_url": "https://x.example",
                    "auth": {
                        "type": "basic",
                        "username": s["basic_user"],
                        "password": s["basic_password"],
                    },
                    "tables": {"a": {"path": "/a"}},
                },
                "db": {
                    "kind": "sql",
                    "url": f"postgresql://u:{s['sql_password']}@h/d",
                    "tables": ["t"],
                },
                "erp": {
                    "kind": "odbc",
                    "connection_string": f"Driver={{X}};PWD={s['odbc_password']};",
                    "tables": ["a"],
                },
                "shop": {
                    "kind": "files",
                    "path": "s3://bucket/exports/",
                    "tables": ["orders"],
                    "s3": {"access_key_id": "AKIAPOLICY1", "secret_access_key": s["s3_secret"]},
                },
            },
        }
    )


@pytest.mark.parametrize("name", sorted(POLICY_SECRETS))
def test_every_kind_of_secret_is_collected_and_masked(name: str) -> None:
    import yaml

    config = policy_config()
    secret = POLICY_SECRETS[name]

    shown = yaml.safe_dump(config.masked())

    assert secret not in shown
    assert any(secret in found for found in config.secrets()) or secret in config.secrets()
    assert secret not in mask_after_registering(config, f"error: {secret} was refused")


def mask_after_registering(config: MillpondConfig, text: str) -> str:
    from millpond.core.masking import mask, register_secrets

    register_secrets(config.secrets())
    return mask(text)


def test_masking_keeps_what_is_not_secret_readable() -> None:
    masked = policy_config().masked()
    crm = masked["sources"]["crm"]

    assert crm["auth"] == {**crm["auth"], "type": "api_key", "name": "X-Client-Key", "value": "***"}
    assert crm["headers"]["Accept"] == "application/json"
    assert crm["tables"]["a"]["params"]["page_size"] == 5
    assert masked["notify"][0]["webhook"] == "https://hooks.slack.com/***"
    assert masked["dbt"]["vars"] == {"salt": "***", "api_token": "***", "region": "eu"}
    assert masked["dbt"]["secret_vars"] == ["salt"]
    assert masked["sources"]["shop"]["s3"]["secret_access_key"] == "***"
    assert masked["sources"]["db"]["url"] == "postgresql://u:***@h/d"


def test_a_webhook_path_word_is_not_taken_for_its_token() -> None:
    secrets = policy_config().secrets()

    assert "services" not in secrets and "whk0tokenXYZ123abc" in secrets


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        (("sources", "x", "auth", "value"), True),
        (("sources", "x", "auth", "username"), True),
        (("sources", "x", "auth", "type"), False),
        (("sources", "x", "auth", "name"), False),
        (("sources", "x", "headers", "Authorization"), True),
        (("sources", "x", "headers", "Proxy-Authorization"), True),
        (("sources", "x", "headers", "X-API-Key"), True),
        (("sources", "x", "headers", "Cookie"), True),
        (("sources", "x", "headers", "X-Session-Id"), True),
        (("sources", "x", "headers", "X-Client-Secret"), True),
        (("sources", "x", "headers", "Accept"), False),
        (("sources", "x", "tables", "t", "params", "sig"), True),
        (("sources", "x", "tables", "t", "params", "page"), False),
        (("sources", "x", "tables", "t", "primary_key"), False),
        (("notify", 0, "webhook"), True),
        (("lake", "secret_access_key"), True),
        (("dbt", "vars", "salt"), False),
        (("dbt", "secret_vars"), False),
    ],
)
def test_the_policy_by_key_path(path: tuple, secret: bool) -> None:
    from millpond.core.masking import is_secret_path

    assert is_secret_path(path) is secret


def test_a_percent_encoded_url_password_is_masked_decoded_too() -> None:
    from millpond.core.masking import value_secrets

    assert "p@ss:w0rd" in value_secrets("postgresql://u:p%40ss%3Aw0rd@h/d")


def test_a_secret_str_is_a_secret_under_any_key() -> None:
    from pydantic import SecretStr

    from millpond.core.masking import collect_secrets, mask_data

    data = {"extra": {"anything": SecretStr("s3cr3t-in-a-SecretStr")}}

    assert mask_data(data) == {"extra": {"anything": "***"}}
    assert "s3cr3t-in-a-SecretStr" in collect_secrets(data)
