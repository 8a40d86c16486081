"""Warehouse targets, one package each (`duckdb/`, `postgres/`): load raw partitions, count
rows, publish marts, hold the writer lock and write the generated dbt profile's output."""
