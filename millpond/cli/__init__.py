"""The `millpond` command (see millpond.cli.main)."""

from millpond.cli.main import app

__all__ = ["app"]
