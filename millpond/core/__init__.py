"""The kernel: config loading, the registries and protocols of kinds, the graph, logs, masking,
locks and run ids. It names no kind and imports no other first-party package."""
