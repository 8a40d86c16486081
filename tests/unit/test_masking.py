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
