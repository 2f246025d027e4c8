"""Tokens for remote registries: which token goes to which server.

A token is sent only to the endpoint it was stored for. Order: ``$AHL_TOKEN``; the token that
``ahl login`` stored for that endpoint (``$XDG_CONFIG_HOME/adapterhub-lite/tokens.json``, mode
0600); and for the Hugging Face Hub alone, the token ``huggingface_hub`` knows (``HF_TOKEN`` or
``hf auth login``). A Hub token is never sent to a self-hosted server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...constants import HF_ENDPOINT_ENV, TOKEN_ENV
from ...errors import ConfigError
from ...files import replacing

HUB_HOSTS = ("https://huggingface.co", "https://hf.co")


def tokens_path() -> Path:
    """``$XDG_CONFIG_HOME/adapterhub-lite/tokens.json`` (``~/.config`` by default)."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "adapterhub-lite" / "tokens.json"


def _stored() -> dict[str, str]:
    try:
        data = json.loads(tokens_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{tokens_path()} is unreadable ({exc}); fix or delete it, then run 'ahl login'") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def token_and_origin(endpoint: str) -> tuple[str | None, str]:
    """The token to send to ``endpoint`` (or None) and where it comes from, in words for a
    message: a refused token is only fixable where it was set."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], f"the token in {TOKEN_ENV}"
    stored = _stored().get(endpoint.rstrip("/"))
    if stored:
        return stored, f"the token 'ahl login' stored in {tokens_path()}"
    if endpoint.rstrip("/") in HUB_HOSTS or endpoint.rstrip("/") == os.environ.get(HF_ENDPOINT_ENV, "").rstrip("/"):
        from huggingface_hub import get_token

        token = get_token()
        return token, "your Hugging Face token" if token else "no token"
    return None, "no token"


def store_token(endpoint: str, token: str | None) -> bool:
    """Remember ``token`` for ``endpoint`` (None forgets it); the file is readable by its owner only.

    Returns whether anything changed: forgetting a token that was never stored writes nothing
    (no tokens file is made for a logout without a login)."""
    tokens = _stored()
    if token is None:
        if tokens.pop(endpoint.rstrip("/"), None) is None:
            return False
    else:
        tokens[endpoint.rstrip("/")] = token
    path = tokens_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.chmod(0o600)  # before the secret is written, so it is never world-readable
        tmp.write_text(json.dumps(tokens, indent=2) + "\n", encoding="utf-8")
    return True
