"""millpond: a lightweight single-node data stack."""

__version__ = "0.1.0"
