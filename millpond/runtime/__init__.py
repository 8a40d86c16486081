"""The composition root, with millpond.cli (the only two packages that wire the stage packages
together): registers the kinds (`kinds`), opens a run's resources (`context`), runs a node
(`execute`) and a whole run (`start`: the start shared by `millpond run` and the deployment;
`flow_runs`: where its graph runs; `lifecycle`, `nothing_new`, `wiring`, `damage`,
`deployment`), and checks and repairs a stack (`doctor`, `lake_actions`)."""
