"""Node kinds, one module (or package) each: how its nodes enter the graph and how one runs
(`extract`, `load`, `dbt/`, `publish`), and what they share (`source_table`: the params of a
source table's nodes; `fingerprints`: nothing changed, nothing rebuilt)."""
