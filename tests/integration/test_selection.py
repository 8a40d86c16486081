"""`--select` / `--exclude` resolved by real dbt (`dbt ls`) over the repository's transform/
project: what each selector keeps of the graph, and what it pulls in or leaves out."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import write_project

from millpond.core.config_loading import load_config
from millpond.core.graph import Graph
from millpond.nodes.dbt.select import SelectionError
from millpond.runtime.context import RunContext
from millpond.runtime.selection import Selection, select_graph

pytestmark = pytest.mark.integration

AGGREGATES = {
    "dbt.agg_monthly_revenue",
    "dbt.agg_pricing_summary",
    "dbt.agg_revenue_by_nation_year",
}
MARTS = {
    "dbt.dim_customer",
    "dbt.dim_part",
    "dbt.dim_supplier",
    "dbt.fct_order_lines",
    "dbt.fct_orders",
}


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunContext, Graph]:
    """One parse of transform/ for the module: a run context and the whole graph."""
    root = write_project(tmp_path_factory.mktemp("selection") / "project", None)
    ctx = RunContext(load_config(root / "millpond.yml", {}), "selection-test")
    return ctx, ctx.graph


def pick(parsed: tuple[RunContext, Graph], *select: str, exclude: tuple[str, ...] = ()) -> Any:
    ctx, whole = parsed
    return select_graph(ctx, whole, select, exclude)


def ids(selection: Selection, kind: str | None = None) -> set[str]:
    return {n.id for n in selection.graph.nodes if kind is None or n.kind == kind}


def test_a_model_and_its_parents_with_their_source_tables_and_no_publish(parsed) -> None:
    chosen = pick(parsed, "+fct_orders")

    assert ids(chosen, "dbt") == {
        "dbt.fct_orders",
        "dbt.fct_order_lines",
        "dbt.stg_erp__orders",
        "dbt.stg_erp__lineitem",
    }
    assert {"load.erp.orders", "extract.erp.orders", "load.erp.lineitem"} <= ids(chosen)
    assert "publish" not in ids(chosen)
    assert "publish left out: the selection rebuilds 2 of 8 publishable models" in (
        chosen.publish_note or ""
    )


def test_a_model_and_its_children(parsed) -> None:
    chosen = pick(parsed, "fct_orders+")

    assert ids(chosen, "dbt") == {
        "dbt.fct_orders",
        "dbt.agg_monthly_revenue",
        "dbt.agg_revenue_by_nation_year",
    }


def test_a_staging_model_pulls_only_the_source_tables_it_reads(parsed) -> None:
    chosen = pick(parsed, "stg_erp__region")

    assert ids(chosen) == {"dbt.stg_erp__region", "load.erp.region", "extract.erp.region"}
    assert chosen.graph.node("load.erp.region").upstream == ("extract.erp.region",)
    assert chosen.graph.node("dbt.stg_erp__region").upstream == ("load.erp.region",)


def test_path_tag_source_and_node_ids(parsed) -> None:
    assert ids(pick(parsed, "path:models/aggregates"), "dbt") == AGGREGATES
    # Several values are a union (also inside one --select value, as dbt splits them).
    both = pick(parsed, "path:models/marts path:models/aggregates")
    assert ids(both, "dbt") == AGGREGATES | MARTS
    assert "publish" in ids(both) and both.publish_note is None
    assert set(both.graph.node("publish").upstream) >= AGGREGATES
    # Commas intersect.
    assert ids(pick(parsed, "path:models/marts,+fct_orders"), "dbt") == {
        "dbt.fct_orders",
        "dbt.fct_order_lines",
    }
    assert ids(pick(parsed, "source:erp.nation")) == {"load.erp.nation", "extract.erp.nation"}
    assert ids(pick(parsed, "load.erp.part")) == {"load.erp.part", "extract.erp.part"}
    assert ids(pick(parsed, "extract.erp.*")) == {
        n.id for n in parsed[1].nodes if n.kind == "extract"
    }


def test_exclude_drops_models_and_publish_but_keeps_what_the_rest_reads(parsed) -> None:
    chosen = pick(parsed, exclude=("path:models/aggregates",))

    assert not ids(chosen) & AGGREGATES
    assert ids(chosen) >= MARTS
    assert {n.id for n in parsed[1].nodes if n.kind in ("extract", "load")} <= ids(chosen)
    assert "publish" not in ids(chosen) and "5 of 8" in (chosen.publish_note or "")
    # Excluding a source stops its loading, its extract too.
    no_lineitem = pick(parsed, "stg_erp__lineitem", exclude=("source:erp.lineitem",))
    assert "load.erp.lineitem" not in ids(no_lineitem)
    assert "extract.erp.lineitem" not in ids(no_lineitem)
    assert "dbt.stg_erp__lineitem" in ids(no_lineitem)


def test_a_path_through_left_out_models_keeps_its_order(parsed) -> None:
    chosen = pick(parsed, "stg_erp__lineitem agg_pricing_summary")

    # agg_pricing_summary <- fct_order_lines <- stg_erp__lineitem: the middle one is left out,
    # and the aggregate still waits for the staging model.
    assert ids(chosen, "dbt") == {"dbt.stg_erp__lineitem", "dbt.agg_pricing_summary"}
    assert "dbt.stg_erp__lineitem" in chosen.graph.node("dbt.agg_pricing_summary").upstream


@pytest.mark.parametrize(
    ("select", "exclude", "says"),
    [
        (("fct_ordrs",), (), "'fct_ordrs' matches nothing"),
        ((), ("tag:nosuch",), "'tag:nosuch' matches nothing"),
        (("publish",), (), "publish cannot be selected"),
        (("stg_erp__region",), ("stg_erp__region", "source:erp.region"), "leaves no node"),
    ],
)
def test_a_selection_of_nothing_is_an_error_naming_it(parsed, select, exclude, says) -> None:
    with pytest.raises(SelectionError, match=says):
        pick(parsed, *select, exclude=exclude)


def test_the_run_context_applies_its_selection(parsed) -> None:
    ctx, _ = parsed
    selected = RunContext(ctx.config, "r2", select=("stg_erp__region",))

    assert {n.id for n in selected.graph.nodes} == {
        "dbt.stg_erp__region",
        "load.erp.region",
        "extract.erp.region",
    }
