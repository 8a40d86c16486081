"""The task graph as a Prefect flow, and the local Prefect server."""
