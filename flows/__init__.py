"""Prefect: the task graph as a Prefect flow (`pipeline`), the local Prefect server (`server`),
serving the deployment (`deployment`), and where the Prefect API is (`prefect_api`).

Kept free of imports: serve imports `flows.prefect_api`, and importing this package must not
load Prefect into the API's process.
"""
