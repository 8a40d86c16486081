"""Warehouse targets, one package each (`duckdb/`, `postgres/`): load raw partitions, count
rows, publish marts, hold the writer lock and write the generated dbt profile's output; and
each target's marts reader (`reader`), what the API reads the published marts through."""
