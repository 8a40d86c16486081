"""The warm node worker: `millpond run-node` without paying Python's and dbt's start-up per task.

Under Airflow every node is a task process, and importing millpond and dbt costs seconds per
task. `millpond run-start` starts one worker process per stack on its machine (`control`): it
imports what nodes need, starts no thread, and listens on a unix socket (`wire.socket_path`).
`millpond run-node` first asks it (`client`, which imports nothing heavy): it sends its argv,
environment, working folder and stdin/stdout/stderr (SCM_RIGHTS); the worker (`server`) forks,
the child takes them over and runs the very same `millpond run-node` command, and the exit
status travels back. A signal to the client kills the child. No worker, a stale socket, other
code or another interpreter than the worker's: the client runs the node inline, as before.
`millpond run-finish` stops the worker; it also exits after `airflow.warm_worker_idle_seconds`.
"""
