"""The `just bench` harness: cases (what runs), measure (time and peak RSS of a process tree),
ledger (millpond's stage breakdown), report (ratios, docs/benchmarks.md, chart, JSON), session
(one session over the same generated files). bench/compare.py is its command line."""
