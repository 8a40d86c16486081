"""Faults a real machine meets (kill -9, servers going away, a full disk): a package so its
shared harness (faults.harness, the `acme` fixture in faults.conftest) is imported by name."""
