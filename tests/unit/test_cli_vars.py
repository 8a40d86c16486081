"""`millpond run --vars`: a YAML or JSON mapping merged over dbt.vars; a bad value is refused
naming the option, never echoing it; a secret-named var is masked from then on."""

from __future__ import annotations

import pytest
import typer

from millpond.cli.dbt_vars import with_vars
from millpond.core.config import config_model
from millpond.core.masking import mask


def test_vars_merge_over_the_configs_and_secret_named_ones_are_masked() -> None:
    config = config_model()(dbt={"vars": {"region": "eu", "limit": 5}})
    merged = with_vars(config, '{"limit": 7, "partner_token": "tok-9f8e7d6c5b4a"}')

    assert merged.dbt.vars == {"region": "eu", "limit": 7, "partner_token": "tok-9f8e7d6c5b4a"}
    assert config.dbt.vars == {"region": "eu", "limit": 5}  # the loaded config is untouched
    assert mask("token tok-9f8e7d6c5b4a in a line") == "token *** in a line"
    assert with_vars(config, "limit: 9").dbt.vars["limit"] == 9  # YAML too
    assert with_vars(config, None) is config


@pytest.mark.parametrize("text", ["[1, 2]", "just-a-secret-value", "{a: [", "{1: x}"])
def test_a_value_that_is_no_mapping_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(typer.BadParameter) as refused:
        with_vars(config_model()(), text)
    assert refused.value.param_hint == "--vars"
    assert text not in str(refused.value)
