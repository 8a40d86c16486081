"""The task graph: every registered node kind's nodes from the config and a synthetic dbt
manifest, ordered, wired through what each node provides, and rendered."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import millpond.core.graph as graph_module
from millpond.core.config import MillpondConfig, config_model
from millpond.core.graph import Graph, GraphError, Node, build_graph, topological
from millpond.core.registry import NODE_KINDS, NodeKind, Registry
from millpond.ingest.sources.files.config import FilesSourceConfig
from millpond.nodes.dbt.graph import DbtParams, DbtTranslator
from millpond.nodes.publish import PUBLISH, PUBLISH_NODE, PublishParams
from millpond.nodes.source_table import SourceTable


def make_config(publish_schemas: list[str] | None = None, **sources: list[str]) -> MillpondConfig:
    return config_model()(
        sources={
            name: FilesSourceConfig(kind="files", path=f"inbox/{name}", tables=tables)
            for name, tables in sources.items()
        },
        publish={"schemas": publish_schemas},
    )


class ParsedProject:
    """Stands in for the dbt project: parsing returns the given manifest."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest

    def graph_manifest(self) -> dict[str, Any]:
        return self.manifest


class Scope:
    """What node kinds build from: the config and the run's resources (the dbt project)."""

    def __init__(self, config: MillpondConfig, manifest: dict[str, Any] | None) -> None:
        self.config = config
        self.resources: dict[str, Any] = {}
        if manifest is not None:
            self.resources["dbt"] = ParsedProject(manifest)

    @property
    def target(self) -> Any:
        raise AssertionError("building the graph must not open the warehouse")

    def resource(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self.resources:
            raise AssertionError(f"building the graph must not create {key!r} here")
        return self.resources[key]


EMPTY: dict[str, Any] = {"nodes": {}, "sources": {}}


def graph_of(config: MillpondConfig, manifest: dict[str, Any] | None) -> Graph:
    """The whole graph; `None` is a dbt project without any resource."""
    return build_graph(Scope(config, manifest if manifest is not None else EMPTY))


def model(
    name: str,
    *deps: str,
    materialized: str = "table",
    schema: str = "marts",
    alias: str | None = None,
    resource_type: str = "model",
) -> tuple[str, dict[str, Any]]:
    uid = f"{resource_type}.proj.{name}"
    return uid, {
        "unique_id": uid,
        "resource_type": resource_type,
        "name": name,
        "schema": schema,
        "alias": alias,
        "config": {"materialized": materialized},
        "depends_on": {"nodes": list(deps)},
    }


def test_node(name: str, *deps: str, attached: str | None = None) -> tuple[str, dict[str, Any]]:
    uid = f"test.proj.{name}"
    return uid, {
        "unique_id": uid,
        "resource_type": "test",
        "name": name,
        "schema": "marts_dbt_test__audit",
        "config": {"materialized": "test"},
        "depends_on": {"nodes": list(deps)},
        "attached_node": attached,
    }


test_node.__test__ = False  # a helper, not a pytest test


def source(source_name: str, name: str) -> tuple[str, dict[str, Any]]:
    uid = f"source.proj.{source_name}.{name}"
    return uid, {"unique_id": uid, "source_name": source_name, "name": name}


def manifest(*nodes: tuple[str, dict[str, Any]], sources=()) -> dict[str, Any]:
    return {"nodes": dict(nodes), "sources": dict(sources)}


SRC_ORDERS = "source.proj.erp.orders"
SRC_CUSTOMERS = "source.proj.erp.customers"
STG_ORDERS = "model.proj.stg_erp__orders"
STG_CUSTOMERS = "model.proj.stg_erp__customers"
DIM = "model.proj.dim_customers"
FCT = "model.proj.fct_orders"


def demo_manifest(*extra: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Two sources -> two staging views -> an ephemeral model -> dim and fct -> an aggregate."""
    return manifest(
        model("stg_erp__orders", SRC_ORDERS, materialized="view", schema="staging"),
        model("stg_erp__customers", SRC_CUSTOMERS, materialized="view", schema="staging"),
        model("int_orders_enriched", STG_ORDERS, materialized="ephemeral"),
        model("dim_customers", STG_CUSTOMERS, alias="customers"),
        model("fct_orders", "model.proj.int_orders_enriched"),
        model("agg_daily", FCT, DIM, schema="aggregates"),
        model("country_codes", resource_type="seed", schema="seeds"),
        *extra,
        sources=[source("erp", "orders"), source("erp", "customers")],
    )


def ancestors(graph: Graph, node_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        for up in graph.node(stack.pop()).upstream:
            if up not in seen:
                seen.add(up)
                stack.append(up)
    return seen


def upstream(graph: Graph, node_id: str) -> set[str]:
    return set(graph.node(node_id).upstream)


# --- source nodes --------------------------------------------------------------------------


def test_one_extract_and_one_load_per_configured_table():
    graph = graph_of(make_config(erp=["orders", "customers"], crm=["contacts"]), None)

    kinds = {n.id: n.kind for n in graph.nodes}
    assert kinds == {
        "extract.erp.orders": "extract",
        "load.erp.orders": "load",
        "extract.erp.customers": "extract",
        "load.erp.customers": "load",
        "extract.crm.contacts": "extract",
        "load.crm.contacts": "load",
        "publish": "publish",
    }
    assert upstream(graph, "load.erp.orders") == {"extract.erp.orders"}
    assert graph.node("load.crm.contacts").params == SourceTable("crm", "contacts")
    assert graph.node("extract.crm.contacts").params == SourceTable("crm", "contacts")
    assert graph.node("load.crm.contacts").provides == (
        "source:crm.contacts",
        "relation:raw.crm__contacts",
    )


def test_source_nodes_carry_the_configured_retry_policy():
    graph = graph_of(make_config(erp=["orders"]), None)

    assert graph.node("extract.erp.orders").retries == 2
    assert graph.node("load.erp.orders").retries == 1


# --- dbt nodes -----------------------------------------------------------------------------


def test_dbt_models_depend_on_the_load_nodes_of_their_sources():
    graph = graph_of(make_config(erp=["orders", "customers"]), demo_manifest())

    assert upstream(graph, "dbt.stg_erp__orders") == {"load.erp.orders"}
    assert upstream(graph, "dbt.stg_erp__customers") == {"load.erp.customers"}
    assert upstream(graph, "dbt.agg_daily") == {"dbt.fct_orders", "dbt.dim_customers"}
    assert upstream(graph, "dbt.country_codes") == set()


def test_sources_that_are_not_configured_add_no_upstream():
    graph = graph_of(make_config(erp=["orders"]), demo_manifest())

    assert upstream(graph, "dbt.stg_erp__customers") == set()


def test_ephemeral_models_are_not_nodes_and_their_parents_pass_through():
    graph = graph_of(make_config(erp=["orders", "customers"]), demo_manifest())

    assert "dbt.int_orders_enriched" not in graph.by_id
    assert upstream(graph, "dbt.fct_orders") == {"dbt.stg_erp__orders"}


def test_dbt_node_params_name_the_relation_with_its_alias():
    graph = graph_of(make_config(erp=["orders", "customers"]), demo_manifest())

    assert graph.node("dbt.dim_customers").params == DbtParams(
        unique_id=DIM,
        resource_type="model",
        select=("dim_customers",),
        tests=(),
        relation="marts.customers",
        schema="marts",
    )
    assert graph.node("dbt.fct_orders").params.relation == "marts.fct_orders"
    assert graph.node("dbt.country_codes").params.resource_type == "seed"


def test_single_model_test_runs_in_its_model_node():
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(test_node("not_null_fct_orders_id", FCT, attached=FCT)),
    )

    params = graph.node("dbt.fct_orders").params
    assert params.tests == ("not_null_fct_orders_id",)
    assert params.select == ("fct_orders", "not_null_fct_orders_id")
    assert "dbt.not_null_fct_orders_id" not in graph.by_id


def test_relationships_test_runs_with_attached_model_and_other_parent_goes_upstream():
    # stg_erp__orders and stg_erp__customers are independent; the test is declared on orders.
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(
            test_node(
                "relationships_orders_customer", STG_ORDERS, STG_CUSTOMERS, attached=STG_ORDERS
            )
        ),
    )

    orders = graph.node("dbt.stg_erp__orders")
    assert "relationships_orders_customer" in orders.params.tests
    assert "relationships_orders_customer" not in graph.node("dbt.stg_erp__customers").params.tests
    assert upstream(graph, "dbt.stg_erp__orders") == {"load.erp.orders", "dbt.stg_erp__customers"}
    assert "dbt.stg_erp__orders" not in ancestors(graph, "dbt.stg_erp__customers")


def test_multi_parent_test_goes_to_the_downstream_parent_when_attaching_would_cycle():
    # Declared on dim_customers, but agg_daily reads dim_customers: running it in
    # dim_customers would need agg_daily first, a cycle. It runs in agg_daily instead.
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(test_node("agg_matches_dim", DIM, "model.proj.agg_daily", attached=DIM)),
    )

    assert graph.node("dbt.agg_daily").params.tests == ("agg_matches_dim",)
    assert graph.node("dbt.dim_customers").params.tests == ()
    assert "dbt.agg_daily" not in ancestors(graph, "dbt.dim_customers")


def test_two_tests_between_the_same_models_never_create_a_cycle():
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(
            test_node("rel_a", STG_ORDERS, STG_CUSTOMERS, attached=STG_ORDERS),
            test_node("rel_b", STG_CUSTOMERS, STG_ORDERS, attached=STG_CUSTOMERS),
        ),
    )

    orders_tests = graph.node("dbt.stg_erp__orders").params.tests
    customers_tests = graph.node("dbt.stg_erp__customers").params.tests
    assert sorted(orders_tests + customers_tests) == ["rel_a", "rel_b"]
    assert "dbt.stg_erp__orders" not in ancestors(graph, "dbt.stg_erp__customers")


def test_test_of_a_model_and_a_source_waits_for_that_source_to_load():
    # A relationships test from a model to a raw source table: the node running it must
    # come after the load of that source, or the test may query a table that is not there.
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(test_node("orders_customer_in_raw", FCT, SRC_CUSTOMERS, attached=FCT)),
    )

    assert graph.node("dbt.fct_orders").params.tests == ("orders_customer_in_raw",)
    assert "load.erp.customers" in ancestors(graph, "dbt.fct_orders")


def test_source_tests_run_with_the_first_model_reading_those_sources():
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(
            model("zz_orders_copy", SRC_ORDERS, schema="staging"),
            test_node("source_not_null_erp_orders_id", SRC_ORDERS),
        ),
    )

    assert graph.node("dbt.stg_erp__orders").params.tests == ("source_not_null_erp_orders_id",)
    assert graph.node("dbt.zz_orders_copy").params.tests == ()
    assert "dbt.source_not_null_erp_orders_id" not in graph.by_id


def test_source_test_without_a_reading_model_becomes_its_own_node_after_the_load():
    graph = graph_of(
        make_config(erp=["orders", "customers", "items"]),
        manifest(
            model("stg_erp__orders", SRC_ORDERS),
            test_node("source_unique_erp_items_id", "source.proj.erp.items"),
            sources=[source("erp", "orders"), source("erp", "items")],
        ),
    )

    node = graph.node("dbt.source_unique_erp_items_id")
    assert node.kind == "dbt"
    assert set(node.upstream) == {"load.erp.items"}
    assert "dbt.source_unique_erp_items_id" in upstream(graph, PUBLISH_NODE)


# --- publish, order, cycles ----------------------------------------------------------------


def test_publish_waits_for_every_node():
    graph = graph_of(
        make_config(erp=["orders", "customers"], crm=["contacts"]),
        demo_manifest(test_node("rel", STG_ORDERS, STG_CUSTOMERS, attached=STG_ORDERS)),
    )

    others = {n.id for n in graph.nodes} - {PUBLISH_NODE}
    assert ancestors(graph, PUBLISH_NODE) == others
    # only sinks are direct parents: agg_daily, country_codes and the unused crm load
    assert upstream(graph, PUBLISH_NODE) == {
        "dbt.agg_daily",
        "dbt.country_codes",
        "load.crm.contacts",
    }
    assert graph.nodes[-1].id == PUBLISH_NODE


def test_publish_without_dbt_resources_waits_for_every_load():
    graph = graph_of(make_config(erp=["orders", "customers"]), None)

    assert upstream(graph, PUBLISH_NODE) == {"load.erp.orders", "load.erp.customers"}


def test_nodes_come_upstream_first():
    graph = graph_of(make_config(erp=["orders", "customers"]), demo_manifest())

    position = {n.id: i for i, n in enumerate(graph.nodes)}
    for up, down in graph.edges():
        assert position[up] < position[down], (up, down)


def test_the_order_is_stable_across_builds():
    config = make_config(erp=["orders", "customers"])

    first = graph_of(config, demo_manifest()).to_json()
    again = graph_of(config, demo_manifest()).to_json()

    assert first == again


def test_a_dependency_cycle_raises_graph_error_naming_the_nodes():
    nodes = [
        Node("dbt.a", "dbt", ("dbt.b",)),
        Node("dbt.b", "dbt", ("dbt.a",)),
        Node("dbt.c", "dbt"),
    ]

    with pytest.raises(GraphError, match=r"cycle among: dbt\.a, dbt\.b$"):
        topological(nodes)


def test_a_model_cycle_in_the_manifest_raises_graph_error():
    cyclic = manifest(model("a", "model.proj.b"), model("b", "model.proj.a"))

    with pytest.raises(GraphError, match="cycle"):
        graph_of(make_config(), cyclic)


def test_dependency_on_an_unknown_node_raises_graph_error():
    with pytest.raises(GraphError, match=r"unknown node 'dbt\.ghost'"):
        topological([Node("dbt.a", "dbt", ("dbt.ghost",))])


def test_asking_for_an_unknown_node_raises_graph_error():
    graph = graph_of(make_config(erp=["orders"]), None)

    with pytest.raises(GraphError, match=r"unknown node 'dbt\.nope'"):
        graph.node("dbt.nope")


def test_duplicate_node_ids_are_rejected():
    with pytest.raises(GraphError, match="duplicate"):
        Graph((Node("dbt.a", "dbt"), Node("dbt.a", "dbt")))


def test_downstream_lists_every_transitive_child():
    graph = graph_of(make_config(erp=["orders", "customers"]), demo_manifest())

    assert graph.downstream("load.erp.customers") == {
        "dbt.stg_erp__customers",
        "dbt.dim_customers",
        "dbt.agg_daily",
        PUBLISH_NODE,
    }


# --- renderings ----------------------------------------------------------------------------


def test_json_lists_every_node_with_its_edges_params_and_provides():
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(test_node("rel", STG_ORDERS, STG_CUSTOMERS, attached=STG_ORDERS)),
    )

    data = json.loads(graph.to_json())

    nodes = {n["id"]: n for n in data["nodes"]}
    assert [n["id"] for n in data["nodes"]] == [n.id for n in graph.nodes]
    edges = [(up, n["id"]) for n in data["nodes"] for up in n["upstream"]]
    assert sorted(edges) == sorted(graph.edges())
    assert nodes["load.erp.orders"]["params"] == {"source": "erp", "table": "orders"}
    assert nodes["load.erp.orders"]["provides"] == ["source:erp.orders", "relation:raw.erp__orders"]
    assert nodes["load.erp.orders"]["retries"] == 1
    orders = nodes["dbt.stg_erp__orders"]["params"]
    assert orders["select"] == ["stg_erp__orders", "rel"]
    assert orders["relation"] == "staging.stg_erp__orders"
    assert nodes["dbt.fct_orders"]["provides"] == ["publishable:marts"]
    assert nodes[PUBLISH_NODE]["params"] == {"schemas": ["aggregates", "marts"]}


def test_mermaid_has_one_line_per_node_and_per_edge():
    graph = graph_of(make_config(erp=["orders", "customers"]), demo_manifest())

    lines = graph.to_mermaid().splitlines()

    assert lines[0] == "flowchart LR"
    arrows = [line for line in lines if "-->" in line]
    assert len(arrows) == len(graph.edges())
    labels = [line for line in lines if '["' in line]
    assert len(labels) == len(graph.nodes)
    alias = {line.split('["')[1].rstrip('"]'): line.split("[")[0].strip() for line in labels}
    for up, down in graph.edges():
        assert f"  {alias[up]} --> {alias[down]}" in arrows


def test_text_rendering_lists_each_node_with_kind_and_upstream():
    graph = graph_of(make_config(erp=["orders"]), None)

    lines = graph.to_text().splitlines()

    assert len(lines) == 3
    assert lines[0].split() == ["extract.erp.orders", "[extract]", "after:", "-"]
    assert lines[1].split() == ["load.erp.orders", "[load]", "after:", "extract.erp.orders"]
    assert lines[2].split() == ["publish", "[publish]", "after:", "load.erp.orders"]


# --- graph parts ------------------------------------------------------------------------------


def test_sources_only_builds_extract_and_load_without_parsing_dbt():
    # What a single extract or load node under Airflow builds: no dbt parse, no publish.
    scope = Scope(make_config(erp=["orders", "customers"]), manifest=None)

    graph = build_graph(scope, with_project=False)

    assert {n.kind for n in graph.nodes} == {"extract", "load"}
    assert len(graph.nodes) == 4


def test_a_dbt_source_waits_for_whichever_node_provides_it():
    config = make_config()
    stg = manifest(
        model("stg_api__events", "source.proj.api.events", materialized="view"),
        model("stg_erp__orders", SRC_ORDERS, materialized="view"),
        sources=[source("api", "events"), source("erp", "orders")],
    )

    nodes = DbtTranslator(config, stg, {"source:api.events": "land.api.events"}).nodes()

    upstream = {n.id: set(n.upstream) for n in nodes}
    assert upstream == {"dbt.stg_api__events": {"land.api.events"}, "dbt.stg_erp__orders": set()}


def test_dbt_nodes_carry_the_dbt_retry_policy():
    config = config_model()(dbt={"policy": {"retries": 3, "timeout_seconds": 60}})

    (node,) = DbtTranslator(config, manifest(model("fct_orders")), {}).nodes()

    assert (node.retries, node.timeout_seconds) == (3, 60)


# --- what publish publishes --------------------------------------------------------------------


def test_publish_defaults_to_the_schemas_of_table_and_incremental_models():
    graph = graph_of(
        make_config(erp=["orders", "customers"]),
        demo_manifest(
            model("fct_events", materialized="incremental", schema="events"),
            model("v_report", FCT, materialized="view", schema="reports"),
        ),
    )

    # not staging (views), seeds or reports (a view): only what table/incremental models build
    assert graph.node(PUBLISH_NODE).params == PublishParams(("aggregates", "events", "marts"))


def test_configured_publish_schemas_win_over_the_models_schemas():
    graph = graph_of(
        make_config(publish_schemas=["reports", "marts"], erp=["orders"]), demo_manifest()
    )

    assert graph.node(PUBLISH_NODE).params == PublishParams(("reports", "marts"))


def test_publish_with_nothing_to_publish_fails_saying_what_to_set():
    graph = graph_of(make_config(erp=["orders"]), None)
    node = graph.node(PUBLISH_NODE)
    assert node.params == PublishParams(())

    with pytest.raises(RuntimeError, match=r"nothing to publish.*publish\.schemas"):
        PUBLISH.run(Scope(make_config(), None), node, None)  # type: ignore[arg-type]


def test_a_dbt_source_with_its_own_name_waits_for_the_load_of_the_relation_it_reads():
    manifest = {
        "nodes": {
            "model.p.stg_orders": {
                "resource_type": "model",
                "name": "stg_orders",
                "schema": "main",
                "config": {"materialized": "view"},
                "depends_on": {"nodes": ["source.p.shop.orders_export"]},
            }
        },
        "sources": {
            "source.p.shop.orders_export": {
                "source_name": "shop",
                "name": "orders_export",
                "schema": "raw",
                "identifier": "erp__orders",
            }
        },
    }
    provided = {
        "source:erp.orders": "load.erp.orders",
        "relation:raw.erp__orders": "load.erp.orders",
    }

    (node,) = DbtTranslator(make_config(), manifest, provided).nodes()

    assert node.upstream == ("load.erp.orders",)


def test_a_subgraph_keeps_the_order_through_the_nodes_it_leaves_out() -> None:
    whole = Graph(
        topological(
            [
                Node("a", "extract"),
                Node("b", "load", ("a",)),
                Node("c", "dbt", ("b",)),
                Node("d", "dbt", ("c",)),
                Node("e", "dbt", ("b", "d")),
            ]
        )
    )

    part = whole.subgraph(["a", "c", "e"])

    assert [n.id for n in part.nodes] == ["a", "c", "e"]
    assert part.node("c").upstream == ("a",)  # through the dropped b
    assert part.node("e").upstream == ("a", "c")  # through b, and through d to c
    assert whole.ancestors(["e"]) == {"a", "b", "c", "d"}
    with pytest.raises(GraphError, match="unknown node 'x'"):
        whole.subgraph(["x"])


def test_publish_waits_for_a_plugin_kind_registered_after_the_builtins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A team's package registers its kind through its own `millpond.kinds` entry point, named
    # after `builtin`, so it is registered after millpond's kinds, publish included.
    registry: Registry[NodeKind] = Registry("node", order=lambda kind: kind.stage)
    for name, kind in NODE_KINDS.items():
        registry.register(name, kind)

    def audits(scope: Any, nodes: list[Node]) -> list[Node]:
        """One data-quality check per loaded table (a TRANSFORM kind, the default stage)."""
        return [Node(f"audit.{n.id}", "audit", (n.id,)) for n in nodes if n.kind == "load"]

    registry.register("zz_audit", NodeKind(build=audits, run=lambda scope, node, report: None))
    monkeypatch.setattr(graph_module, "NODE_KINDS", registry)

    graph = graph_of(make_config(erp=["orders"]), demo_manifest())

    assert "audit.load.erp.orders" in upstream(graph, PUBLISH_NODE)
    assert graph.nodes[-1].id == PUBLISH_NODE
    assert registry.names() == ["extract", "load", "dbt", "zz_audit", "publish"]
