"""The source kinds: what each kind of source offers a table, and how it is read as Arrow.

A source kind is one module or package plus one registration (millpond.runtime.kinds); landing
(ingest.landing) is the same for every kind, so a kind only says what is new and how to read it
(millpond.core.registry.Source).

- `files/`: export files dropped into a folder or an S3 prefix (`config`, `discovery`: which
  file feeds which table);
- `sql`: PostgreSQL and MariaDB/MySQL tables or queries, through DuckDB's scanners;
- `odbc`: any ODBC data source, through arrow-odbc;
- `rest/`: JSON APIs (`config`, `client`: credentials, redirects, retries; `pagination`).

What kinds share:
- `tables`: a database table spec (table or query, full or incremental) and its cursor (sql,
  odbc);
- `inbox`: where files come from, a local folder or an S3 prefix, with content hashes
  remembered (files);
- `records`: JSON records as Arrow and the incremental filter over them (rest; any API-like
  source, e.g. an Airbyte connector's records).
"""
