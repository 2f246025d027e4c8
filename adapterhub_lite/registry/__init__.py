"""Registries, laid out along their seams:

- ``format/``: what both sides share: refs, manifests (:class:`Entry`), the content-addressed
  blob store, search tags, and the checks on everything a server sends (the trust boundary).
- ``client/``: the :class:`Registry` protocol and its two implementations, the local directory
  registry and remote registries (the Hugging Face Hub or ``ahl serve``), with the download
  cache and the tokens.
- ``server/``: ``ahl serve``, the Hub-compatible HTTP server over a local registry, its
  repository store and index, and the catalog pages.

The public entry points are :mod:`adapterhub_lite.hub`'s verbs; ``registry/SPEC.md`` is the format.
"""
