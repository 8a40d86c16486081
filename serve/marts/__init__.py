"""Marts as an API: the catalog from the dbt manifest, readers of the published marts, the
query builder and the output formats, each in its own module."""
