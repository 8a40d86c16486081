"""The composition root with millpond.cli: registers the kinds (`kinds`), opens a run's
resources (`context`) and runs nodes and whole runs (`execute`, `lifecycle`, `nothing_new`,
`deployment`); the only package that wires the stage packages together."""
