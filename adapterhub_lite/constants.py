"""Names shared across the package: environment variables, protocol paths and headers, and the
default locations they configure (as ``huggingface_hub.constants`` keeps its own).

Environment variables are read when a value is needed, never at import, so a test or a long-lived
process that changes one sees the change.
"""

from __future__ import annotations

import os
from pathlib import Path

# -- environment variables --------------------------------------------------------------------

REGISTRY_ENV = "AHL_REGISTRY"  # the default --registry: a directory or a remote URL
CACHE_ENV = "AHL_CACHE"  # the download cache's directory
TOKEN_ENV = "AHL_TOKEN"  # a token for every remote registry, before the stored ones
OFFLINE_ENVS = ("AHL_OFFLINE", "HF_HUB_OFFLINE")  # true: resolve remote refs from the cache only
HF_ENDPOINT_ENV = "HF_ENDPOINT"  # huggingface_hub's own: the Hub's URL
SERVE_TOKENS_ENV = "AHL_SERVE_TOKENS"  # ahl serve's TOKEN:USER pairs
NO_PROGRESS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"  # huggingface_hub's own; the CLI honours it too
# Test hook: crash tests set this in a server subprocess only; at the named step of a write the
# process SIGKILLs itself, as kill -9 or a power cut would (registry/SPEC.md 14.7).
CRASH_ENV = "AHL_SERVE_TEST_CRASH_AT"

# -- the protocol between the client and ahl serve --------------------------------------------

HF_ENDPOINT = "https://huggingface.co"
SEARCH_LIKE_PATH = "/api/ahl/search-like"  # ahl serve's ranking by task embedding (SPEC 14.9)
# A client sends this request header (value "basic") when it uploads "lfs" files with the LFS
# basic transfer, Xet off; ahl serve answers "lfs" in preupload only then (SPEC 14.6), since a
# stock huggingface_hub with hf_xet installed would take an "lfs" answer to Xet and fail.
LFS_TRANSFER_HEADER = "X-AHL-LFS-Transfer"


def env_true(name: str) -> bool:
    """Whether an environment variable holds a true value (1, true, yes, on; any case)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# -- default locations ------------------------------------------------------------------------


def default_registry_root() -> Path:
    """``$AHL_REGISTRY``, else ``$XDG_DATA_HOME/adapterhub-lite/registry`` (``~/.local/share``)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV]).expanduser()
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "adapterhub-lite" / "registry"


def cache_root() -> Path:
    """``$AHL_CACHE``, else ``$XDG_CACHE_HOME/adapterhub-lite`` (``~/.cache``): pulled artifacts."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adapterhub-lite"
