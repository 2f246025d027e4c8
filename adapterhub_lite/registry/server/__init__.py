"""``ahl serve``: the Hub-compatible HTTP server, its repository store and index, the catalog pages."""
