"""What a registry version is, on either side of the wire: an :class:`Entry` (a ref and its
manifest), the summary that search shows (taken from the artifact metadata at push time), and
the version numbering of pushes without one (``registry/SPEC.md``, "Registry layout")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...base import BaseFingerprint
from ...config import METRICS, AdapterConfig
from ...errors import NotFoundError
from .refs import Ref, version_key

# What a summary's ``architecture`` holds (see summarize): a preset, a head alone, or a fusion;
# search --arch takes one of them.
ARCHITECTURES = (*AdapterConfig.PRESETS, "head_only", "fusion")
# The dev metrics search --sort orders by, best first: those where higher is better (not mse).
SORT_METRICS = tuple(m for m in METRICS if m != "auto")


@dataclass(frozen=True)
class Entry:
    """One version of one registry entry, with its manifest."""

    ref: Ref
    manifest: dict[str, Any]
    yanked: bool = False
    score: float | None = None  # search --like: the cosine of the task embeddings

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.manifest.get("summary", {}))

    def to_dict(self) -> dict[str, Any]:
        """The version's key facts as JSON-ready values (what ``--json`` prints for an entry)."""
        s = self.summary
        return {
            "ref": str(self.ref),
            "base": self.ref.base,
            "task": self.ref.task,
            "name": self.ref.name,
            "version": self.ref.version,
            "digest": self.digest,
            "yanked": self.yanked,
            "architecture": s.get("architecture"),
            "head": s.get("head"),
            "metrics": s.get("metrics", {}),
            "tags": s.get("tags", []),
            "pushed_at": self.manifest.get("pushed_at"),
            # a remote registry's repository holding the version: one server can hold the same
            # key in several namespaces (SPEC 14.2); None in a local registry
            "repo": self.manifest.get("repo"),
        }

    def check_base(self, base_id: str, fingerprint: BaseFingerprint) -> None:
        """Compare the recorded base fingerprint (from the manifest, before any weights move)
        with the base it will be used on; raise :class:`IncompatibleBaseError` naming both."""
        BaseFingerprint.from_dict(self.summary["fingerprint"]).check_compatible(
            fingerprint, trained=f"{self.ref} was trained on {self.ref.base}", other_base=f"the base is {base_id}"
        )


def summarize(metadata: dict[str, Any]) -> dict[str, Any]:
    """What search shows and filters on, taken from the artifact metadata at push time."""
    adapter = metadata.get("adapter") or {}
    head = metadata.get("head", {})
    architecture = "fusion" if metadata["kind"] == "fusion" else adapter.get("preset", "head_only")
    return {
        "kind": metadata["kind"],
        "fingerprint": metadata["base"].get("fingerprint"),
        "architecture": architecture,
        "adapters": [f"{a['base']}/{a['task']}/{a['name']}" for a in metadata.get("adapters", [])],
        "head": head.get("type"),
        "labels": head.get("label_names", []),
        "metrics": metadata.get("metrics", {}).get("dev", {}),
        "tags": sorted({f"task:{metadata['task']}", f"head:{head.get('type')}", *metadata.get("tags", [])}),
        # the training data's task embedding (SPEC 2.8), which ranks entries in search --like
        **({"task_embedding": metadata["task_embedding"]} if metadata.get("task_embedding") else {}),
    }


def all_yanked(ref: Ref, versions: list[str]) -> NotFoundError:
    """The error for a ref without a version whose entry has versions, every one yanked: not
    "not in the registry", which would send the user looking for a typo."""
    ordered = sorted(versions, key=version_key)
    entry = f"{ref.base}/{ref.task}/{ref.name}"
    return NotFoundError(
        f"every version of {entry} is yanked ({', '.join(ordered)}); name one to use it anyway, "
        f"e.g. {entry}@{ordered[-1]}"
    )


def next_version(existing: list[str]) -> str:
    """The version after the newest of ``existing`` (sorted oldest first): next patch, or 1.0.0."""
    if not existing:
        return "1.0.0"
    major, minor, patch = version_key(existing[-1])
    return f"{major}.{minor}.{patch + 1}"
