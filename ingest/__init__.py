"""The sources and the lake: what the extract stage reads and the raw partitions it lands.

Names of the stage: `extract` is the stage (its nodes are `extract.<source>.<table>`); to
*land* is what it does, writing a table's new items as one immutable partition of the run
(`raw/<source>/<table>/ingest_date=.../run=.../`, manifest last). `ingest` is only this
package's name (and `ingest_date`, a partition's folder, is part of the lake's format). The next
stage, `load`, belongs to the targets (millpond.targets), which read the partitions landed here.

What is where:
- `sources/`: the source kinds (`files/`, `sql`, `odbc`, `rest/`) and what they share
  (`tables`, `inbox`, `records`); see its docstring;
- landing, the same for every kind: `landing` (what is new, the partition, the manifest last),
  `landing_items` (each item checked against the contract and written as a part),
  `landing_state` (what one table's landing carries from item to item), `contract` (what a
  table accepts), `parts` (writing a part), `staging` (parts under hidden names until
  complete), `quarantine` (bad rows kept aside), `rejections` (files kept out, per run),
  `reads` (the last reads of incremental tables, for the stall check), `storage_errors` (a
  failing disk is not the file's fault);
- the lake: `lake` (local or S3 through pyarrow.fs; manifests), `s3` (one S3 connection for
  Arrow and DuckDB), `replay` (taking back and re-landing partitions);
- reading: `formats/` (one module per file format), `schema` (lossless type reconciliation,
  used at load), `duckdb_extensions` (DuckDB's extensions from their wheels);
- `demo`: the demo data.
"""
