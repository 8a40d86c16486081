"""The FastAPI service: run history, metrics, marts, the trigger and the dashboard."""
