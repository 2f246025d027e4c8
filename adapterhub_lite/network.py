"""Whether to use the network, and what its failures look like: offline mode, one quick probe of
the Hugging Face Hub, and the connection-level errors of the HTTP stack huggingface_hub runs on.

huggingface_hub retries a failed connection with backoff (about half a minute in all); callers
that can answer from a local cache, or say how to, probe once here instead of waiting for that.
"""

from __future__ import annotations

import functools
import importlib

from .constants import OFFLINE_ENVS, env_true


def offline() -> bool:
    """``AHL_OFFLINE`` or ``HF_HUB_OFFLINE`` set to a true value: resolve from the cache only."""
    return any(env_true(name) for name in OFFLINE_ENVS)


@functools.cache  # a failed import is not cached by Python: trying each one per client costs ms
def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures of whichever HTTP stack ``huggingface_hub`` uses (it moved from
    requests to httpx); the status-code errors are ``HfHubHTTPError`` either way."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
        ("requests", "Timeout"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def hub_reachable() -> bool:
    """Whether the Hub endpoint answers one request (no retries, 5 s at most); False in offline
    mode without asking."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if offline() or constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=5).close()
    except Exception:  # any failure to connect (DNS, refused, TLS, timeout) means not reachable
        return False
    return True
