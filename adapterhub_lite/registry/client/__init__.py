"""The client side: the local directory registry, remote registries, the download cache, tokens."""
