"""Registries: refs, the local directory registry (and, later, remote registries and the cache)."""
