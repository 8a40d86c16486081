"""The sql source kind's config: what a user may write, and the errors for what they may not."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from millpond.ingest.sources.sql import SqlSourceConfig, dsn


def config(**overrides: object) -> SqlSourceConfig:
    data = {"kind": "sql", "url": "postgresql://u@h:5432/db", "tables": ["invoices"], **overrides}
    return SqlSourceConfig.model_validate(data)


def test_a_list_of_tables_reads_whole_tables_named_like_the_keys() -> None:
    tables = config().tables
    assert list(tables) == ["invoices"]
    assert tables["invoices"].table is None and tables["invoices"].incremental is None


def test_table_and_query_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="`table` or `query`, not both"):
        config(tables={"t": {"table": "a", "query": "select 1"}})


def test_a_table_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"must be name or schema\.name"):
        config(tables={"t": {"table": "a; drop table b"}})


@pytest.mark.parametrize("url", ["sqlite:///x.db", "oracle://u@h/db", "not a url"])
def test_an_unknown_database_is_refused_naming_the_schemes(url: str) -> None:
    with pytest.raises(ValidationError, match="postgresql://, mysql:// or mariadb://"):
        config(url=url)


def test_the_incremental_lookback_cannot_be_negative() -> None:
    with pytest.raises(ValidationError):
        config(tables={"t": {"incremental": {"column": "id", "lookback": -1}}})


def test_dsn_quotes_values_with_spaces_and_quotes() -> None:
    text, kind = dsn("postgresql://ann:p%20w%27x@db.internal:6543/sales")
    assert kind == "postgres"
    assert text == "host=db.internal port=6543 user=ann password='p w\\'x' dbname=sales"


def test_dsn_of_mysql_and_a_socket_host() -> None:
    assert dsn("mysql://root@127.0.0.1/test") == (
        "host=127.0.0.1 port=3306 user=root database=test",
        "mysql",
    )
    assert dsn("postgresql://postgres@/db?host=/tmp/pg")[0].startswith("host=/tmp/pg port=5432")
