"""Artifacts on disk: a directory holding ``adapter.json``, ``adapter.safetensors`` and ``README.md``.

The metadata records everything needed to rebuild and check the adapter (see
``registry/SPEC.md``), including the sha256 and size of every other file. Writing is atomic: the
directory is assembled beside its destination and renamed into place, so a crash never leaves a
half-written artifact. Reading verifies every file before any weight is used.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import shutil
from dataclasses import dataclass
from importlib import metadata as _metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArtifactError, ConfigError, IntegrityError
from .files import sha256_file, staged_directory
from .registry.format.refs import base_key, check_segment

if TYPE_CHECKING:
    import torch

    from .base import BaseModel

FORMAT_VERSION = "1.0"
METADATA_FILES = {"adapter": "adapter.json", "fusion": "fusion.json"}
WEIGHTS_FILES = {"adapter": "adapter.safetensors", "fusion": "fusion.safetensors"}
# A fusion artifact keeps verified copies of the adapters it mixes here (not in its ``files``:
# they are locked by the digests in ``fusion.json`` instead).
FUSION_ADAPTERS_DIR = "adapters"
CARD_FILE = "README.md"
HEATMAP_FILE = "fusion-heatmap.svg"  # the activation heatmap a fusion carries (SPEC 13)
REQUIRED_KEYS = ("format_version", "kind", "name", "task", "base", "head", "files")
_FORMAT_VERSION = re.compile(r"1\.[0-9]+")


@dataclass
class Artifact:
    """A verified artifact directory and its metadata."""

    path: Path
    metadata: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.metadata["kind"])

    @property
    def metadata_path(self) -> Path:
        return self.path / METADATA_FILES[self.kind]

    @property
    def digest(self) -> str:
        """``sha256:`` + the sha256 of the metadata file, which records every other file's sha256."""
        return "sha256:" + sha256_file(self.metadata_path)

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILES[self.kind]

    def load_weights(self) -> dict[str, torch.Tensor]:
        """The tensors of the weights file (safetensors: no code runs on load)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(self.weights_path))
        except (SafetensorError, OSError) as exc:
            raise IntegrityError(
                f"{self.weights_path} is truncated or corrupt ({exc}); fetch the artifact again"
            ) from None


def library_versions() -> dict[str, str]:
    """The versions of the libraries an artifact was written with (those installed)."""
    out = {}
    for package in ("adapterhub-lite", "torch", "transformers", "safetensors", "huggingface-hub"):
        try:
            out[package] = _metadata.version(package)
        except _metadata.PackageNotFoundError:
            pass
    return out


def new_metadata(
    *, kind: str, name: str, task: str, base: BaseModel, fields: dict[str, Any], license: str | None = None
) -> dict[str, Any]:
    """The one builder of an artifact's metadata (training, fusion and import all use it):
    identity, creation time, the base and its fingerprint, then ``fields`` (what the kind and
    its origin add: ``adapter``, ``head``, ``training``, ...), the library versions and the
    ``license`` when given. ``files`` is added by :func:`write_artifact`.
    """
    return {
        "kind": kind,
        "name": name,
        "task": task,
        "version": None,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "base": {"model_id": base.model_id, "revision": base.revision, "fingerprint": base.fingerprint.to_dict()},
        **fields,
        "library": library_versions(),
        **({"license": license} if license is not None else {}),
    }


def write_artifact(
    out: Path,
    metadata: dict[str, Any],
    weights: dict[str, torch.Tensor],
    card: str,
    *,
    extra_files: dict[str, bytes] | None = None,
    extra_dirs: dict[str, Path] | None = None,
    overwrite: bool = False,
) -> Artifact:
    """Write an artifact directory atomically and return it, verified.

    ``metadata["files"]`` is filled in here with the sha256 and size of the weights, the card
    and each of ``extra_files`` (name -> content, e.g. ``metrics.jsonl``). ``extra_dirs``
    (relative path -> directory) are copied in unlisted, e.g. a fusion's adapters.

    Raises:
        ArtifactError: ``out`` exists (and is not an empty directory) and ``overwrite`` is off.
    """
    out = Path(out)
    kind = metadata["kind"]
    check_writable(out, overwrite=overwrite)
    from safetensors.torch import save_file

    # swap_into_place makes the finished tree shareable (files.share_tree)
    with staged_directory(out) as staging:
        weights_name = WEIGHTS_FILES[kind]
        save_file(weights, str(staging / weights_name), metadata={"format": "pt"})
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        for relative, source in (extra_dirs or {}).items():
            shutil.copytree(source, staging / relative)
        metadata = {
            **metadata,
            "format_version": FORMAT_VERSION,
            "files": {
                name: {"sha256": sha256_file(staging / name), "size": (staging / name).stat().st_size}
                for name in (weights_name, CARD_FILE, *(extra_files or {}))
            },
        }
        text = json.dumps(_finite(metadata), indent=2, allow_nan=False)
        (staging / METADATA_FILES[kind]).write_text(text + "\n", encoding="utf-8")
    return read_artifact(out)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged metric is recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# What marks a directory as an artifact that ``overwrite`` may replace: ours, or an export to
# the ``adapters`` format (adapters_format.py).
_ARTIFACT_MARKERS = (*METADATA_FILES.values(), "adapter_config.json")


def is_artifact_dir(path: Path) -> bool:
    """Whether ``path`` holds an artifact's metadata file (adapter.json or fusion.json)."""
    return any((path / name).is_file() for name in METADATA_FILES.values())


def check_writable(out: Path, *, overwrite: bool, source: Path | None = None) -> None:
    """Refuse to write over an existing file or non-empty directory unless told to; told to, refuse
    anything but artifacts: a file, the working directory or one holding it, ``source`` (what the
    command reads) or one holding it, or a directory with other files in it (replacing ``out``
    removes everything in it).

    Raises:
        ArtifactError: ``out`` may not be written, saying why.
    """
    # an artifact holds its own files only (a fusion copies its adapters whole, strays included)
    inside = next((p for p in out.resolve().parents if is_artifact_dir(p)), None)
    if inside is not None:
        raise ArtifactError(f"{out} is inside the artifact {inside}; choose an output directory outside it")
    if not out.exists():
        return
    # even empty: the finished tree is swapped in by renaming, which the working directory survives badly
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ArtifactError(f"{out} is the working directory or holds it; choose another output directory")
    if out.is_dir() and not any(out.iterdir()):
        return
    if not overwrite:
        raise ArtifactError(f"{out} already exists; choose another output directory or overwrite it (--overwrite)")
    if not out.is_dir():
        raise ArtifactError(f"{out} is a file, not an artifact directory; choose another output directory")
    if source is not None and source.resolve().is_relative_to(out.resolve()):
        raise ArtifactError(f"{out} is what is being read ({source}); choose another output directory")
    if not _replaceable(out):
        raise ArtifactError(
            f"{out} holds files that are not an artifact, and overwriting it would delete them; "
            f"choose another output directory"
        )


def _replaceable(path: Path) -> bool:
    """An artifact directory, or one that holds only such directories (``fuse --auto``'s kept
    candidates), or nothing."""
    if any((path / marker).is_file() for marker in _ARTIFACT_MARKERS):
        return True
    return all(entry.is_dir() and not entry.is_symlink() and _replaceable(entry) for entry in path.iterdir())


def read_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """Open an artifact directory, checking its metadata and (by default) every file's sha256.

    Raises:
        ArtifactError: not a directory, no metadata file, or malformed metadata.
        IntegrityError: a file is missing or its size or sha256 differs from the metadata.
    """
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise ArtifactError(f"{path} {what}; an artifact is a directory with adapter.json or fusion.json")
    found = [kind for kind, name in METADATA_FILES.items() if (path / name).is_file()]
    if not found:
        raise ArtifactError(f"{path} is not an adapterhub-lite artifact (no adapter.json or fusion.json in it)")
    meta_path = path / METADATA_FILES[found[0]]
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON ({exc})") from None
    check_metadata(metadata, meta_path)
    artifact = Artifact(path, metadata)
    if verify:
        verify_files(artifact)
    return artifact


def check_metadata(metadata: Any, where: Path | str) -> None:
    """Raise :class:`ArtifactError` where required fields are missing or the major version is newer."""
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{where}: metadata must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ArtifactError(f"{where}: metadata lacks required field(s): {', '.join(missing)}")
    version = metadata["format_version"]
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]+\.[0-9]+", version):
        raise ArtifactError(f"{where}: format_version must be a string MAJOR.MINOR, not {version!r}")
    if not _FORMAT_VERSION.fullmatch(version):
        raise ArtifactError(
            f"{where}: format version {version} is not readable by this version "
            f"(reads {FORMAT_VERSION.split('.')[0]}.x); upgrade adapterhub-lite"
        )
    kind = metadata["kind"]
    if not isinstance(kind, str) or kind not in METADATA_FILES:
        raise ArtifactError(f"{where}: unknown artifact kind {kind!r}")
    files = metadata["files"]
    if not isinstance(files, dict) or WEIGHTS_FILES[kind] not in files:
        raise ArtifactError(f"{where}: metadata 'files' must list {WEIGHTS_FILES[kind]}")
    for name, record in files.items():
        if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
            raise ArtifactError(f"{where}: file name {name!r} must be a plain name inside the artifact")
        if not (
            isinstance(record, dict) and isinstance(record.get("sha256"), str) and isinstance(record.get("size"), int)
        ):
            raise ArtifactError(f"{where}: files[{name!r}] must be an object with sha256 and size")


def verify_files(artifact: Artifact) -> None:
    """Check size and sha256 of every file the metadata lists."""
    for name, expected in artifact.metadata["files"].items():
        check_file(artifact.path / name, expected)


def check_file(file: Path, expected: dict[str, Any]) -> None:
    """Raise :class:`IntegrityError` unless ``file`` exists with the ``size`` and ``sha256`` of
    its record."""
    if not file.is_file():
        raise IntegrityError(f"{file.parent}: file {file.name} is missing")
    size = file.stat().st_size
    if size != expected.get("size"):
        raise IntegrityError(
            f"{file} has {size} bytes, metadata says {expected.get('size')}: truncated or "
            f"replaced; fetch the artifact again"
        )
    if sha256_file(file) != expected.get("sha256"):
        raise IntegrityError(f"{file} does not match its sha256 in the metadata; fetch it again")


LICENSE_PATTERN = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


def check_license(license: str | None) -> str | None:
    """A license as the Hub's ``license`` field takes it: an id such as ``apache-2.0``, ``mit``,
    ``cc-by-4.0`` or ``other`` (lowercase letters, digits, ``.``, ``+``, ``-``)."""
    if license is not None and not LICENSE_PATTERN.fullmatch(license):
        raise ConfigError(
            f"license {license!r} is not a license id; use the Hub's ids, e.g. apache-2.0, mit, cc-by-4.0 or other"
        )
    return license


def hub_model_id(model_id: str) -> str | None:
    """``model_id`` when it names a Hub repository, None for a local directory (whose path the
    metadata keeps in ``base.model_id``; a card's ``base_model`` takes Hub ids only)."""
    return model_id if not Path(model_id).is_absolute() and base_key(model_id) == model_id else None


def _dataset_ids(metadata: dict[str, Any]) -> list[str]:
    """The Hub dataset ids the artifact was trained on (``hf:NAME[:SPLIT]`` sources); a local
    file is no dataset id, so it is not listed."""
    ids = []
    for record in metadata.get("training", {}).get("data", {}).values():
        source = str(record.get("source", ""))
        if source.startswith("hf:") and (dataset := source.split(":")[1]) and dataset not in ids:
            ids.append(dataset)
    return ids


def render_model_card(metadata: dict[str, Any], *, adapters_export: bool = False) -> str:
    """The Hugging Face model card (``README.md``) of an artifact, built with huggingface_hub's
    ``ModelCard``/``ModelCardData``/``EvalResult``: valid with or without metrics.

    With ``adapters_export``, the card of the directory ``ahl export --format adapters`` writes:
    the header and usage AdapterHub's own exports carry (``library_name: adapter-transformers``).
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    base_id = metadata["base"]["model_id"]
    hub_base = hub_model_id(base_id)
    task, name, head = metadata["task"], metadata["name"], metadata["head"]
    adapter = metadata.get("adapter")
    metrics = {k: v for k, v in metadata.get("metrics", {}).get("dev", {}).items() if v is not None}
    pipeline = "multiple-choice" if head["type"] == "multiple_choice" else "text-classification"
    datasets = _dataset_ids(metadata)
    if adapters_export:
        tags = ["adapter-transformers", metadata["base"]["fingerprint"]["model_type"], f"task:{task}"]
        library = "adapter-transformers"
    else:
        tags = ["adapterhub-lite", "adapters", f"task:{task}", head["type"]]
        if adapter:
            tags.append(f"adapter:{adapter['preset']}")
        if metadata["kind"] == "fusion":
            tags.append("adapter:fusion")
        # Remote registries find entries by these tags without knowing their namespace (SPEC 14.2).
        key = base_key(base_id)
        tags += [f"ahl-entry:{key}/{task}/{name}", f"base_model:{key}"]
        library = "adapterhub-lite"
    if hub_base:  # the tag the Hub derives from base_model + base_model_relation: adapter
        tags.append(f"base_model:adapter:{hub_base}")
    results = [
        EvalResult(
            task_type=pipeline,
            dataset_type=datasets[0] if datasets else task,
            dataset_name=task,
            dataset_split="dev",
            metric_type=k,
            metric_value=round(float(v), 4),
        )
        for k, v in metrics.items()
    ]
    data = ModelCardData(
        library_name=library,
        license=metadata.get("license"),
        base_model=hub_base,
        base_model_relation="adapter" if hub_base else None,
        pipeline_tag=pipeline,
        tags=tags,
        datasets=datasets or None,
        model_name=name if results else None,
        eval_results=results or None,
    )
    fused = [a["name"] for a in metadata.get("adapters", [])]
    imported = metadata.get("imported_from")
    what = (
        f"An AdapterFusion over {len(fused)} adapters ({', '.join(fused)})"
        if fused
        else f"A {adapter['preset'] if adapter else 'head-only'} adapter"
    )
    how = "converted from AdapterHub's adapters format" if imported else "trained with adapterhub-lite"
    body = [f"# {name}", "", f"{what} for the task **{task}** on `{base_id}`, {how}.", ""]
    if imported:
        body += [
            f"Converted from the AdapterHub `adapters` adapter `{imported['adapter_name']}` "
            f"({imported['source']}" + (f" at {imported['commit']}" if imported.get("commit") else "") + ").",
            "",
        ]
    if head.get("placeholder"):
        body += [
            "The source has no prediction head: this artifact's head is an all-zero placeholder; it serves "
            "fusion, not prediction.",
            "",
        ]
    elif head["type"] == "classification":
        body += [f"Labels: {', '.join(head['label_names'])}.", ""]
    if metrics:
        body += ["| dev metric | value |", "|---|---|", *[f"| {k} | {v:.4f} |" for k, v in metrics.items()], ""]
    if adapters_export:
        body += [
            "## Usage",
            "",
            "```bash",
            "pip install -U adapters",
            "```",
            "",
            "```python",
            "from adapters import AutoAdapterModel",
            "",
            f"model = AutoAdapterModel.from_pretrained({json.dumps(hub_base or base_id)})",
            '# ".": run from this directory (a copy on the Hub loads by its repo id, source="hf")',
            'adapter_name = model.load_adapter(".", set_active=True)',
            "```",
            "",
        ]
    elif not head.get("placeholder"):
        pairs = metadata.get("columns", {}).get("text_pair")
        text_column = metadata.get("columns", {}).get("text", "text")
        body += [
            "## Usage",
            "",
            "One text per line in a `.txt` file (or a CSV/JSON Lines file with a "
            f"`{text_column}` column"
            + (f" and a `{pairs}` column: this adapter reads text pairs" if pairs else "")
            + "), run from this directory (elsewhere, name the directory or the registry ref instead of `.`):",
            "",
            "```bash",
            "printf 'first text\\nsecond text\\n' > texts.txt",
            "ahl predict . -i texts.txt",
            "```",
            "",
        ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)))


def artifact_files(artifact: Artifact) -> dict[str, dict[str, Any] | None]:
    """Every file that belongs to an artifact, as paths relative to its directory, with the
    record (``sha256``, ``size``) its metadata holds for it: the metadata file (``None``: no
    record holds it), the files it lists and, for a fusion, each of its adapters' files under
    ``adapters/``. Only metadata is read; the files themselves are not checked."""
    files: dict[str, dict[str, Any] | None] = {METADATA_FILES[artifact.kind]: None, **artifact.metadata["files"]}
    if artifact.kind == "fusion":
        for part in fusion_adapters(artifact, verify=False):
            files.update(
                {
                    f"{FUSION_ADAPTERS_DIR}/{part.path.name}/{name}": record
                    for name, record in artifact_files(part).items()
                }
            )
    return files


def read_whole_artifact(path: str | Path) -> Artifact:
    """Open an artifact directory and verify it as a whole: every file's sha256 and, for a fusion,
    the adapter copies it was trained with (a fusion without them cannot be loaded or used).

    Raises:
        ArtifactError / IntegrityError: as :func:`read_artifact` and :func:`fusion_adapters`.
    """
    artifact = read_artifact(path)
    if artifact.kind == "fusion":
        fusion_adapters(artifact)
    return artifact


def fusion_adapters(artifact: Artifact, *, verify: bool = True) -> list[Artifact]:
    """The adapters a fusion artifact mixes, from its ``adapters/`` directory, each matched
    against the digest the fusion recorded and (unless ``verify`` is off, for callers that
    check the files otherwise) verified.

    Raises:
        ArtifactError: an adapter copy is missing (pull the fusion to fetch its adapters).
        IntegrityError: a copy is not the version the fusion was trained with.
    """
    parts = []
    for record in artifact.metadata["adapters"]:
        path = artifact.path / FUSION_ADAPTERS_DIR / check_segment(record["name"], "adapter name")
        if not path.is_dir():
            raise ArtifactError(
                f"{path} is missing: the fusion needs adapter {record['name']!r}; "
                f"fetch the fusion with 'ahl pull', which brings its adapters"
            )
        part = read_artifact(path, verify=verify)
        if part.digest != record["digest"]:
            raise IntegrityError(
                f"{path} is not the adapter this fusion was trained with "
                f"(digest {part.digest[:19]}..., expected {record['digest'][:19]}...)"
            )
        parts.append(part)
    return parts
