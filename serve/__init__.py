"""The FastAPI service: run history from the ledger (marts and the dashboard come later)."""
