"""__PROJECT__'s own API routes, mounted by millpond beside its own (serve.routers)."""
