"""Volume and freshness monitors computed from the run ledger, never from the warehouse.

- `stats`: the judgement itself (median and MAD of a history, a band, a verdict), pure;
- `volume`: a source table's rows landed in this run (the extract node, right after landing)
  and each published mart's row count (the publish node, before it publishes) against the
  history of earlier successful runs; an anomaly at `severity: error` fails its node, so
  nothing of the run is published;
- `freshness`: source tables with no landing for longer than their `expect_every`, checked
  when a run closes (a run with nothing new included) and by `millpond check-freshness`.

Every finding is an `AnomalyFound` record in the ledger (`anomalies`); docs/monitoring.md.
"""
