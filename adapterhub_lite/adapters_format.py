"""Convert between adapterhub-lite artifacts and AdapterHub's ``adapters`` format.

An ``adapters`` directory (what ``model.save_adapter(DIR, name)`` writes, and what AdapterHub
publishes on the Hugging Face Hub) holds:

* ``adapter_config.json``: ``{"config": {...BnConfig...}, "model_type", "hidden_size",
  "model_name", "model_class", "name", "version"}``;
* the adapter weights, ``adapter.safetensors`` (``use_safetensors=True``) or the legacy pickle
  ``pytorch_adapter.bin``, named ``<prefix>.encoder.layer.<l>.<site>.adapters.<name>.adapter_down.0.*``
  and ``...adapter_up.*`` with ``<site>`` ``attention.output`` (``mh_adapter``) or ``output``
  (``output_adapter``);
* optionally a flexible head: ``head_config.json`` and ``model_head.safetensors`` or
  ``pytorch_model_head.bin`` (``heads.<name>.1.*``: dense, ``heads.<name>.4.*``: output).

Only what adapterhub-lite computes identically converts: sequential bottleneck adapters
(``seq_bn``/``pfeiffer`` and ``double_seq_bn``/``houlsby`` and their variants in reduction
factor, non-linearity and positions) with the two-layer tanh head on the first token. Any other
option value fails with a one-line :class:`ConfigError` naming the option: a converted adapter
either reproduces the original outputs or does not exist. Pickled ``.bin`` files are read with
``torch.load(weights_only=True)`` only, which refuses anything but tensors and plain containers,
so a malicious file cannot run code.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .artifact import (
    CARD_FILE,
    Artifact,
    check_license,
    check_writable,
    new_metadata,
    read_artifact,
    render_model_card,
    write_artifact,
)
from .base import DEFAULT_BASE, BaseModel, load_base
from .config import AdapterConfig, HeadConfig
from .constants import HF_ENDPOINT, HF_ENDPOINT_ENV
from .errors import (
    ArtifactError,
    BaseModelError,
    ConfigError,
    IncompatibleBaseError,
    IntegrityError,
    NotFoundError,
    RefError,
    UnreachableError,
    UnsupportedModelError,
)
from .files import sha256_file, staged_directory
from .model import HEAD_PREFIX, AdapterModel
from .registry.format.refs import check_segment

FORMAT = "adapters"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_SAFETENSORS = "adapter.safetensors"
WEIGHTS_PICKLE = "pytorch_adapter.bin"
HEAD_CONFIG_FILE = "head_config.json"
HEAD_SAFETENSORS = "model_head.safetensors"
HEAD_PICKLE = "pytorch_model_head.bin"
SOURCE_FILES = (CONFIG_FILE, WEIGHTS_SAFETENSORS, WEIGHTS_PICKLE, HEAD_CONFIG_FILE, HEAD_SAFETENSORS, HEAD_PICKLE)
# The ``version`` export writes: the adapters release whose loader the exports are checked against
# (scripts/make_adapters_fixtures.py). Its presence also stops adapters from applying its
# pre-version renames (``gelu`` meant ``gelu_new`` in configs without a version).
EXPORT_VERSION = "adapters.1.3.0"


@dataclass(frozen=True)
class _Family:
    """How ``adapters`` names one model family: weight prefix and flexible-head model class."""

    prefix: str
    model_class: str


# Families whose ``adapters`` implementation hooks the same two modules as ours (BertSelfOutput and
# BertOutput style: sublayer output + pretrained LayerNorm), so placement is identical.
FAMILIES: dict[str, _Family] = {
    "bert": _Family("bert", "BertAdapterModel"),
    "roberta": _Family("roberta", "RobertaAdapterModel"),
    "xlm-roberta": _Family("roberta", "XLMRobertaAdapterModel"),
    "electra": _Family("electra", "ElectraAdapterModel"),
}
# Our position -> the ``adapters`` config switch and the module (relative to a layer) holding it.
_SITES = {"attention": ("mh_adapter", "attention.output"), "ffn": ("output_adapter", "output")}
# Weight names of adapter-transformers 1.x/2.x, renamed as ``adapters`` itself does on load.
_LEGACY_NAMES = {
    "attention_text_task_adapters": "adapters",
    "attention_text_lang_adapters": "adapters",
    "layer_text_task_adapters": "adapters",
    "layer_text_lang_adapters": "adapters",
}
# ``adapters`` non-linearity name -> ours. Both libraries use exact (erf) GELU for ``gelu``,
# SiLU for ``swish``/``silu`` and slope 0.01 for leaky ReLU.
_NON_LINEARITIES = {
    "relu": "relu",
    "gelu": "gelu",
    "swish": "swish",
    "silu": "silu",
    "tanh": "tanh",
    "leakyrelu": "leaky_relu",
    "leaky_relu": "leaky_relu",
}
_EXPORT_NON_LINEARITIES = {
    "relu": "relu",
    "gelu": "gelu",
    "swish": "swish",
    "silu": "silu",
    "tanh": "tanh",
    "leaky_relu": "leakyrelu",
}
_INITS = {"bert": "bert", "houlsby": "houlsby", "mam_adapter": "zero_up"}
_EXPORT_INITS = {ours: theirs for theirs, ours in _INITS.items()}
_ARCHITECTURES = {
    "lora": "LoRA",
    "mtl_lora": "multi-task LoRA",
    "prefix_tuning": "prefix tuning",
    "prompt_tuning": "prompt tuning",
    "reft": "ReFT",
    "union": "a combination of methods (ConfigUnion, e.g. MAM or UniPELT)",
}
# Every BnConfig option of adapters 1.3 that our computation implements only at one value:
# option -> (that value, what another value would add).
_FIXED_OPTIONS: dict[str, tuple[Any, str]] = {
    "is_parallel": (False, "parallel adapters"),
    "phm_layer": (False, "Compacter PHM layers"),
    "inv_adapter": (None, "invertible adapters after the embeddings"),
    "use_gating": (False, "gated adapters"),
    "original_ln_after": (True, "the adapter output skips the pretrained LayerNorm"),
    "ln_before": (False, "a new LayerNorm before the bottleneck"),
    "ln_after": (False, "a new LayerNorm after the bottleneck"),
    "scaling": (1.0, "a scaled adapter output"),
    "cross_adapter": (False, "adapters after cross-attention"),
    # A left-out layer would be a zero adapter here, but AdapterFusion over it would still mix
    # it in at that layer, unlike adapters: not the same model once fused.
    "leave_out": ([], "no adapter in some layers"),
}
# Options with no effect on the outputs in the configurations accepted above (training-time
# dropout, init seeds, the settings of disabled PHM/invertible layers, the residual order
# around a LayerNorm that ln_after=False leaves out).
_INERT_OPTIONS = {
    "dropout",
    "stochastic_depth",
    "init_weights_seed",
    "adapter_residual_before_ln",
    "inv_adapter_reduction_factor",
    "phm_dim",
    "factorized_phm_W",
    "shared_W_phm",
    "shared_phm_rule",
    "factorized_phm_rule",
    "phm_c_init",
    "phm_init_range",
    "learn_phm",
    "hypercomplex_nonlinearity",
    "phm_rank",
    "phm_bias",
    "architecture",
}
# BnConfig defaults of adapters 1.3 for everything export does not set from our config.
_EXPORT_DEFAULTS: dict[str, Any] = {
    "original_ln_after": True,
    "ln_before": False,
    "ln_after": False,
    "init_weights_seed": None,
    "is_parallel": False,
    "scaling": 1.0,
    "use_gating": False,
    "residual_before_ln": True,
    "adapter_residual_before_ln": False,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "cross_adapter": False,
    "leave_out": [],
    "dropout": 0.0,
    "phm_layer": False,
    "phm_dim": 4,
    "factorized_phm_W": True,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "factorized_phm_rule": False,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "phm_rank": 1,
    "phm_bias": True,
    "stochastic_depth": 0.0,
}
# The 2-layer head is an nn.Sequential (dropout, dense, tanh, dropout, out): its linear layers are 1 and 4.
_HEAD_LAYERS = {"1": "dense", "4": "out"}


# -- reading the source ------------------------------------------------------------------------


def fetch(
    source: str | Path,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Find an ``adapters`` directory: a local path as is, or a Hub repository downloaded.

    Args:
        source: a directory holding ``adapter_config.json``, or a repository id (``org/name``).
        revision: branch, tag or commit of the repository (default: its main branch).
        endpoint: Hub URL, e.g. a self-hosted ``ahl serve`` (default: ``$HF_ENDPOINT`` or the Hub).
        token: Hub token (default: the one ``ahl login`` stored for the endpoint; for the Hub,
            also the one ``huggingface_hub`` finds).
        cache_dir: the download cache (default: ``$AHL_CACHE``, see ``registry/SPEC.md`` 14.5);
            files land there verified, under ``imports/<endpoint>/<repo>/<commit>``.

    Returns:
        The directory and where it came from: ``source``, ``revision``, and for a repository the
        resolved ``commit`` and the ``endpoint``.

    Raises:
        NotFoundError: no such directory, repository, revision or file.
        AhlError: the Hub cannot be reached.
        RemoteError, IntegrityError: the server's answer breaks a rule, or a file does not
            match what it stated (nothing is kept; see :meth:`RemoteRegistry.download_files`).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ArtifactError(f"{path} is not an adapters directory (no {CONFIG_FILE} in it)")
        return path, {"source": str(path.resolve()), "revision": None}
    from .hub import looks_like_path  # hub imports this module

    if path.is_file() or looks_like_path(str(source)):  # not a repository id: no download to try
        what = "is a file" if path.is_file() else "does not exist"
        raise NotFoundError(
            f"{source} {what}: an adapters directory holds {CONFIG_FILE} and the weights; "
            "a Hub repository id looks like ORG/NAME"
        )
    # Our own verified download path, not huggingface_hub's snapshot_download: that one builds
    # cache paths from the server's ETag, so a hostile endpoint could write outside its cache.
    from .registry.client.cache import DownloadCache
    from .registry.client.remote import RemoteRegistry

    repo = str(source)
    url = (endpoint or os.environ.get(HF_ENDPOINT_ENV) or HF_ENDPOINT).rstrip("/")
    try:
        remote = RemoteRegistry(
            url,
            token=token if isinstance(token, str) else None,
            cache=DownloadCache(cache_dir) if cache_dir is not None else None,
        )
        local, commit = remote.download_files(repo, SOURCE_FILES, revision=revision)
    except RefError:
        raise NotFoundError(f"{repo!r} is neither a directory nor a Hub repository id (ORG/NAME)") from None
    except UnreachableError as exc:
        # "REPO@REVISION: cannot reach URL (ConnectError); <a registry's cache advice>": the cause
        # is kept, the advice (about registry refs) does not apply to an import
        cause = _first_line(exc).split("; ")[0]
        cause = cause.split(": ", 1)[-1] if cause.startswith(f"{repo}@") else cause
        raise UnreachableError(
            f"cannot download {repo} (and no local directory has that name): {cause}; check the network "
            f"and {HF_ENDPOINT_ENV}, or import from a local directory"
        ) from None
    if not (local / CONFIG_FILE).is_file():
        raise NotFoundError(f"repository {repo} holds no {CONFIG_FILE}: not an adapters adapter")
    return local, {"source": repo, "revision": revision, "commit": commit, "endpoint": endpoint}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not readable JSON ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return data


def read_tensors(directory: Path, safetensors_name: str, pickle_name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """The tensors of ``safetensors_name`` or, failing that, of the legacy pickle ``pickle_name``.

    The pickle is read with ``torch.load(weights_only=True)``: PyTorch's restricted unpickler
    accepts tensors and plain containers and refuses every other global before calling it, so a
    crafted file cannot run code.

    Returns:
        The file name read and its tensors.

    Raises:
        NotFoundError: neither file exists.
        IntegrityError: the file is corrupt, or holds something other than named tensors.
    """
    if (directory / safetensors_name).is_file():
        name = safetensors_name
        try:
            tensors = load_file(str(directory / name))
        except (SafetensorError, OSError) as exc:
            raise IntegrityError(f"{directory / name} is corrupt ({_first_line(exc)})") from None
    elif (directory / pickle_name).is_file():
        name = pickle_name
        try:
            tensors = torch.load(directory / name, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError...: all mean "refused"
            raise IntegrityError(
                f"{directory / name} was refused: it is not a plain tensor checkpoint ({_first_line(exc)}); "
                f"only weights_only pickles are read, ask for a safetensors copy"
            ) from None
    else:
        raise NotFoundError(f"{directory} holds neither {safetensors_name} nor {pickle_name}")
    if not isinstance(tensors, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise IntegrityError(f"{directory / name} does not hold a mapping of names to tensors")
    return name, dict(tensors)


# -- configs -----------------------------------------------------------------------------------


def convert_config(config: Any, *, name: str, legacy: bool = False) -> AdapterConfig:
    """Our :class:`AdapterConfig` for an ``adapters`` config dict, or a one-line refusal.

    Args:
        config: the ``config`` object of ``adapter_config.json``.
        name: the adapter's name, for messages.
        legacy: the file has no ``version`` (written before ``adapters``): ``gelu`` then meant
            ``gelu_new``, as ``adapters`` itself reads it.

    Raises:
        ConfigError: a method other than a bottleneck adapter, or an option value that
            adapterhub-lite does not compute exactly as ``adapters`` does.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"cannot import adapter {name!r}: its config is {config!r}, not a config object")

    def refuse(option: str, value: Any, why: str) -> ConfigError:
        return ConfigError(
            f"cannot import adapter {name!r}: {option}={json.dumps(value, default=str)} ({why}) "
            f"is not supported; adapterhub-lite imports sequential bottleneck adapters"
        )

    architecture = config.get("architecture")
    if architecture is not None:
        raise refuse("architecture", architecture, _ARCHITECTURES.get(str(architecture), "not a bottleneck adapter"))
    if config.get("invertible_adapter"):  # adapter-transformers 1.x spelling of inv_adapter
        raise refuse("invertible_adapter", config["invertible_adapter"], "invertible adapters after the embeddings")
    for option, (supported, why) in _FIXED_OPTIONS.items():
        value = config.get(option, supported)
        if option == "leave_out" and value is None:
            value = []
        if value != supported or type(value) is not type(supported) and not _same_number(value, supported):
            raise refuse(option, value, why)
    known = {
        "mh_adapter",
        "output_adapter",
        "reduction_factor",
        "non_linearity",
        "original_ln_before",
        "residual_before_ln",
        "init_weights",
        "invertible_adapter",
        *_FIXED_OPTIONS,
        *_INERT_OPTIONS,
    }
    for option, value in config.items():
        if option not in known and value not in (None, False):
            raise refuse(option, value, "an option unknown to this importer")

    positions = tuple(p for p, (switch, _) in _SITES.items() if config.get(switch, False))
    if not positions:
        raise refuse("mh_adapter/output_adapter", False, "no adapter at any position")
    ln_before = config.get("original_ln_before", False)
    if not isinstance(ln_before, bool):
        raise refuse("original_ln_before", ln_before, "not a boolean")
    residual = config.get("residual_before_ln", True)
    # With the pretrained LayerNorm before the adapter, adapters adds the adapter's residual
    # from the sublayer output only when residual_before_ln is true; without it, both values
    # take the sublayer output.
    if residual is not True and (ln_before or residual is not False):
        raise refuse("residual_before_ln", residual, "the adapter's residual taken after the LayerNorm")
    reduction = config.get("reduction_factor")
    if isinstance(reduction, Mapping):
        raise refuse("reduction_factor", reduction, "a reduction factor per layer")
    if (
        isinstance(reduction, bool)
        or not isinstance(reduction, (int, float))
        or not (math.isfinite(reduction) and reduction >= 1 and float(reduction).is_integer())
    ):
        raise refuse("reduction_factor", reduction, "not a whole number >= 1")
    raw = str(config.get("non_linearity", "")).lower()
    if legacy:
        raw = {"gelu": "gelu_new", "gelu_orig": "gelu"}.get(raw, raw)
    if raw not in _NON_LINEARITIES:
        raise refuse("non_linearity", config.get("non_linearity"), "an activation adapterhub-lite lacks")
    init = config.get("init_weights", "bert")
    if init not in _INITS:
        raise refuse("init_weights", init, "an unknown initialisation")
    result = AdapterConfig(
        preset="pfeiffer" if ln_before else "houlsby",
        positions=positions,
        reduction_factor=int(reduction),
        non_linearity=_NON_LINEARITIES[raw],
        original_ln_before=ln_before,
        init=_INITS[init],
    )
    result.validate()
    return result


def _same_number(value: Any, expected: Any) -> bool:
    """1 and 1.0 are the same scaling; True is not the number 1 here."""
    numbers = (int, float)
    return (
        isinstance(value, numbers)
        and isinstance(expected, numbers)
        and not isinstance(value, bool)
        and not isinstance(expected, bool)
        and value == expected
    )


def convert_head(head_config: Mapping[str, Any], *, model_class: str) -> HeadConfig:
    """Our :class:`HeadConfig` for an ``adapters`` ``head_config.json``, or a one-line refusal.

    Supported: ``classification`` (``num_labels`` 1 is regression, as in ``adapters``) and
    ``multiple_choice``, with 2 layers, tanh, no pooler and biases: the head adapterhub-lite
    computes (section 6 of the spec).

    Raises:
        ConfigError: any other head.
    """
    config = head_config.get("config")
    where = f"head {head_config.get('name')!r}"
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"cannot import {where} of model class {head_config.get('model_class')!r}: a static "
            f"transformers head is not supported; import without the head"
        )
    if head_config.get("model_class") not in (model_class, model_class.replace("AdapterModel", "ModelWithHeads")):
        raise ConfigError(
            f"cannot import {where}: model class {head_config.get('model_class')!r} does not match "
            f"the adapter's base ({model_class})"
        )
    head_type = config.get("head_type")
    checks = [("layers", 2), ("activation_function", "tanh"), ("use_pooler", False), ("bias", True)]
    for option, supported in checks:
        value = config.get(option, supported)
        if value != supported:
            raise ConfigError(
                f"cannot import {where}: {option}={json.dumps(value)} is not supported (adapterhub-lite "
                f"heads are 2 layers, tanh, on the first token, with biases)"
            )
    dropout = config.get("dropout_prob")
    dropout = 0.1 if dropout is None else float(dropout)
    if head_type == "multiple_choice":
        return HeadConfig(type="multiple_choice", num_choices=config.get("num_choices"), dropout=dropout)
    if head_type != "classification":
        raise ConfigError(
            f"cannot import {where}: head type {head_type!r} is not supported (classification, "
            f"regression and multiple_choice are)"
        )
    num_labels = config.get("num_labels")
    if not isinstance(num_labels, int) or num_labels < 1:
        raise ConfigError(f"cannot import {where}: num_labels={num_labels!r} is not a positive integer")
    if num_labels == 1:
        return HeadConfig(type="regression", dropout=dropout)
    label2id = config.get("label2id") or {f"LABEL_{i}": i for i in range(num_labels)}
    by_id = {int(i): str(label) for label, i in label2id.items()}
    if sorted(by_id) != list(range(num_labels)):
        raise ConfigError(f"cannot import {where}: label2id {dict(label2id)} does not number 0..{num_labels - 1}")
    return HeadConfig(type="classification", label_names=[by_id[i] for i in range(num_labels)], dropout=dropout)


# -- weights -----------------------------------------------------------------------------------


def convert_weights(
    tensors: Mapping[str, torch.Tensor], *, adapter_name: str, config: AdapterConfig, num_layers: int
) -> dict[str, torch.Tensor]:
    """Rename ``adapters`` adapter tensors to ours (``adapter.<l>.<position>.down|up.*``).

    Raises:
        IncompatibleBaseError: the adapter has weights for another number of layers.
        ArtifactError: a tensor that is not part of this adapter, or one missing.
    """
    out: dict[str, torch.Tensor] = {}
    site_to_position = {site: position for position, (_, site) in _SITES.items()}
    parts = {"adapter_down.0": "down", "adapter_up": "up"}
    marker = f".adapters.{adapter_name}."
    for key, tensor in tensors.items():
        renamed = key
        for old, new in _LEGACY_NAMES.items():
            renamed = renamed.replace(old, new)
        head, sep, tail = renamed.partition(marker)
        layer_path = head.rpartition("encoder.layer.")[2]
        index, _, site = layer_path.partition(".")
        part, _, param = tail.rpartition(".")
        if not (
            sep
            and "encoder.layer." in head
            and index.isdigit()
            and site in site_to_position
            and part in parts
            and param in ("weight", "bias")
        ):
            raise ArtifactError(
                f"unexpected tensor {key!r} in the weights of adapter {adapter_name!r} (only "
                f"bottleneck adapter weights of an encoder layer can be imported)"
            )
        out[f"adapter.{int(index)}.{site_to_position[site]}.{parts[part]}.{param}"] = tensor.float()
    depth = 1 + max((int(key.split(".")[1]) for key in out), default=-1)
    if depth != num_layers:
        raise IncompatibleBaseError(
            f"adapter {adapter_name!r} has weights for {depth} layers, the base has {num_layers}"
        )
    expected = {
        f"adapter.{layer}.{position}.{part}.{param}"
        for layer in range(num_layers)
        for position in config.positions
        for part in ("down", "up")
        for param in ("weight", "bias")
    }
    if set(out) != expected:
        missing, extra = sorted(expected - set(out)), sorted(set(out) - expected)
        raise ArtifactError(
            f"the weights of adapter {adapter_name!r} do not match its positions "
            f"({', '.join(config.positions)}): missing {missing[:2]}, unexpected {extra[:2]}"
        )
    return out


def convert_head_weights(tensors: Mapping[str, torch.Tensor], *, head_name: str) -> dict[str, torch.Tensor]:
    """Rename ``heads.<name>.1|4.*`` to ``head.dense|out.*``.

    Raises:
        ArtifactError: a tensor that is not one of the four.
    """
    out = {}
    for key, tensor in tensors.items():
        prefix, _, rest = key.rpartition(f"heads.{head_name}.")
        index, _, param = rest.partition(".")
        if prefix or index not in _HEAD_LAYERS or param not in ("weight", "bias"):
            raise ArtifactError(f"unexpected tensor {key!r} in the weights of head {head_name!r}")
        out[f"head.{_HEAD_LAYERS[index]}.{param}"] = tensor.float()
    if len(out) != 4:
        raise ArtifactError(f"head {head_name!r} has {len(out)} of its 4 tensors (dense and output, weight and bias)")
    return out


# -- import ------------------------------------------------------------------------------------


def import_adapter(
    source: str | Path,
    *,
    to: str | Path,
    base: str | BaseModel | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    name: str | None = None,
    task: str | None = None,
    with_head: bool = True,
    overwrite: bool = False,
    license: str | None = None,
) -> Artifact:
    """Convert an adapter in AdapterHub's ``adapters`` format into an adapterhub-lite artifact.

    The artifact records where it came from in ``imported_from`` (source, revision and commit,
    the sha256 of every file read, the original configs). Without a head in the source (or
    with ``with_head=False``) the artifact gets an all-zero placeholder regression head marked
    ``"placeholder": true``: the adapter serves fusion and :meth:`AdapterModel.encode`, not
    ``predict``.

    Args:
        source: a local ``adapters`` directory or a Hub repository id.
        to: the artifact directory to write.
        base: our base (Hub id, local directory or loaded); default: the ``model_name`` the
            adapter records. Its family and hidden size must match the adapter's.
        revision, endpoint, token, cache_dir: where and how to download a repository (see
            :func:`fetch`); ``endpoint`` may be a self-hosted ``ahl serve``.
        name, task: artifact name and task (default: the adapter's name, sanitised).
        with_head: convert the head too, when the source has one.
        overwrite: replace an existing artifact at ``to``.
        license: the license id recorded in the metadata and the card (e.g. ``apache-2.0``).

    Returns:
        The written, verified artifact.

    Raises:
        ConfigError: a method or option adapterhub-lite cannot compute exactly (named).
        IncompatibleBaseError: the base's family, hidden size or depth differ from the adapter's.
        UnsupportedModelError: a family this converter does not map.
        IntegrityError: a weights file is corrupt or an unsafe pickle.
        NotFoundError, AhlError: the source cannot be found or downloaded.

    Example:
        >>> import_adapter("AdapterHub/roberta-base-pf-imdb", base="roberta-base", to="imdb").metadata["task"]
        'imdb'
    """
    local = Path(source).expanduser()
    check_writable(Path(to), overwrite=overwrite, source=local if local.exists() else None)
    check_license(license)
    directory, origin = fetch(source, revision=revision, endpoint=endpoint, token=token, cache_dir=cache_dir)
    meta = _read_json(directory / CONFIG_FILE)
    adapter_name = str(meta.get("name") or "")
    if not adapter_name:
        raise ArtifactError(f"{directory / CONFIG_FILE} names no adapter ('name' is missing)")
    config = convert_config(meta.get("config"), name=adapter_name, legacy="version" not in meta)
    model_type = meta.get("model_type")
    family = _family(model_type, adapter_name)
    name = check_segment(name or _sanitise(adapter_name), "name")
    task = check_segment(task or name, "task")

    base_model = base if isinstance(base, BaseModel) else _load_base(base, meta.get("model_name"))
    fingerprint = base_model.fingerprint
    if fingerprint.model_type != model_type or fingerprint.hidden_size != meta.get("hidden_size"):
        raise IncompatibleBaseError(
            f"adapter {adapter_name!r} was trained on a {model_type} model with hidden size {meta.get('hidden_size')} "
            f"({meta.get('model_name')}), but base {base_model.model_id} is {fingerprint.model_type} with hidden size "
            f"{fingerprint.hidden_size}; pass the adapter's base with --base"
        )
    weights_file, tensors = read_tensors(directory, WEIGHTS_SAFETENSORS, WEIGHTS_PICKLE)
    weights = convert_weights(tensors, adapter_name=adapter_name, config=config, num_layers=fingerprint.num_layers)
    read = [CONFIG_FILE, weights_file]

    head_meta = None
    if with_head and (directory / HEAD_CONFIG_FILE).is_file():
        head_meta = _read_json(directory / HEAD_CONFIG_FILE)
        head = convert_head(head_meta, model_class=family.model_class)
        head_file, head_tensors = read_tensors(directory, HEAD_SAFETENSORS, HEAD_PICKLE)
        weights.update(convert_head_weights(head_tensors, head_name=str(head_meta.get("name"))))
        read += [HEAD_CONFIG_FILE, head_file]
    else:
        head = placeholder_head()

    imported_from = {
        "format": FORMAT,
        **origin,
        "adapter_name": adapter_name,
        "model_name": meta.get("model_name"),
        "model_class": meta.get("model_class"),
        "written_by": meta.get("version"),
        "files": {f: {"sha256": sha256_file(directory / f), "size": (directory / f).stat().st_size} for f in read},
        "config": meta.get("config"),
        "head": head_meta.get("config") if head_meta else None,
    }
    model = AdapterModel(base_model)
    try:
        model.add_adapter(name, config)
        model.set_head(head)
        expected = model.artifact_state_dict(name)
        if head_meta is None:
            weights.update({k: torch.zeros_like(v) for k, v in expected.items() if k.startswith(HEAD_PREFIX)})
        for key, tensor in weights.items():
            if tensor.shape != expected[key].shape:
                raise ArtifactError(
                    f"tensor {key} of adapter {adapter_name!r} has shape {list(tensor.shape)}, "
                    f"base {base_model.model_id} needs {list(expected[key].shape)}"
                )
        model.load_artifact_state_dict(name, weights)
        return write_model_artifact(
            model, Path(to), task=task, imported_from=imported_from, overwrite=overwrite, license=license
        )
    finally:
        model.remove_hooks()


def placeholder_head() -> HeadConfig:
    """The head of an artifact imported without one: one all-zero output, marked as such."""
    return HeadConfig(type="regression", dropout=0.0, extra={"placeholder": True})


def _family(model_type: Any, adapter_name: str) -> _Family:
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"adapter {adapter_name!r} is for model type {model_type!r}; adapters-format conversion supports "
            f"{', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]


def _load_base(base: str | None, model_name: Any) -> BaseModel:
    """Load ``base``, defaulting to the base the adapter records (or ours)."""
    chosen = base or (str(model_name) if model_name else DEFAULT_BASE)
    try:
        return load_base(chosen)
    except BaseModelError as exc:
        if base:
            raise
        raise BaseModelError(
            f"{str(exc).rstrip('.')}; the adapter records base {chosen!r}: pass --base MODEL_ID_OR_DIR"
        ) from None


def _sanitise(adapter_name: str) -> str:
    """An artifact name from an ``adapters`` name (which may hold any character)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in adapter_name)
    cleaned = cleaned.strip("._-").replace("..", ".")[:96]
    return cleaned or "adapter"


def write_model_artifact(
    model: AdapterModel,
    out: Path,
    *,
    task: str,
    imported_from: dict[str, Any] | None = None,
    overwrite: bool = False,
    license: str | None = None,
) -> Artifact:
    """Write the active adapter and head of ``model`` as an artifact without training metadata.

    The name is the active adapter's. Used for imports (with ``imported_from``) and for
    building adapters directly in tests and fixtures.
    """
    name = model.active
    if name is None or model.head is None:
        raise ConfigError("the model needs an active adapter and a head to be written as an artifact")
    metadata = new_metadata(
        kind="adapter",
        name=name,
        task=task,
        base=model.base,
        license=check_license(license),
        fields={"adapter": model.adapter_configs[name].to_dict(), "head": model.head.config.to_dict()},
    )
    if imported_from is not None:
        metadata["imported_from"] = imported_from
    return write_artifact(
        out, metadata, model.artifact_state_dict(name), render_model_card(metadata), overwrite=overwrite
    )


# -- export ------------------------------------------------------------------------------------


def export_adapter(
    artifact: str | Path | Artifact,
    out: str | Path,
    *,
    with_head: bool = True,
    weights_format: str = "both",
    overwrite: bool = False,
) -> Path:
    """Write an adapter artifact as a directory that ``adapters`` loads with ``model.load_adapter(DIR)``.

    Args:
        artifact: an adapter artifact directory (verified before use).
        out: the directory to write.
        with_head: include the head (``head_config.json`` and its weights), when it is a trained
            one; ``adapters`` adds it on a flexible-head model (``AutoAdapterModel``).
        weights_format: ``safetensors`` (``load_adapter(DIR, use_safetensors=True)``), ``bin``
            (``load_adapter(DIR)``, whose default reads only the pickle) or ``both``.
        overwrite: replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        ConfigError: a fusion or head-only artifact, a head ``adapters`` cannot compute (mean
            pooling, multiple choice without a fixed number of choices), or a bad ``weights_format``.
        UnsupportedModelError: a base family this converter does not map.
    """
    if weights_format not in ("safetensors", "bin", "both"):
        raise ConfigError(f"unknown weights format {weights_format!r}; choose safetensors, bin or both")
    art = artifact if isinstance(artifact, Artifact) else read_artifact(artifact)
    meta = art.metadata
    if art.kind != "adapter" or not meta.get("adapter"):
        raise ConfigError(
            f"{art.path} is a {'fusion' if art.kind == 'fusion' else 'head-only'} artifact; only "
            f"adapters can be exported to the adapters format"
        )
    fingerprint = meta["base"]["fingerprint"]
    family = _family(fingerprint["model_type"], meta["name"])
    config = AdapterConfig.from_dict(meta["adapter"])
    config.validate()
    name = meta["name"].replace(".", "_")  # adapters keeps adapters in ModuleDicts: no dots in keys
    head = HeadConfig.from_dict(meta["head"])
    head_config = _export_head(head) if with_head and not head.extra.get("placeholder") else None

    tensors = art.load_weights()
    adapter_weights, head_weights = {}, {}
    parts = {"down": "adapter_down.0", "up": "adapter_up"}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "adapter":
            layer, position, part, param = rest.split(".")
            site = _SITES[position][1]
            adapter_weights[f"{family.prefix}.encoder.layer.{layer}.{site}.adapters.{name}.{parts[part]}.{param}"] = (
                tensor.contiguous()
            )
        elif head_config is not None:
            layer, param = rest.split(".")
            index = {v: k for k, v in _HEAD_LAYERS.items()}[layer]
            head_weights[f"heads.{name}.{index}.{param}"] = tensor.contiguous()

    common = {
        "model_type": fingerprint["model_type"],
        "hidden_size": fingerprint["hidden_size"],
        "model_name": meta["base"]["model_id"],
        "model_class": family.model_class,
        "name": name,
        "version": EXPORT_VERSION,
    }
    adapter_config = {
        **common,
        "config": {
            **_EXPORT_DEFAULTS,
            "mh_adapter": "attention" in config.positions,
            "output_adapter": "ffn" in config.positions,
            "reduction_factor": config.reduction_factor,
            "non_linearity": _EXPORT_NON_LINEARITIES[config.non_linearity],
            "original_ln_before": config.original_ln_before,
            "init_weights": _EXPORT_INITS[config.init],
        },
    }
    out = Path(out)
    check_writable(out, overwrite=overwrite, source=art.path)
    with staged_directory(out) as staging:
        _write_json(staging / CONFIG_FILE, adapter_config)
        (staging / CARD_FILE).write_text(render_model_card(meta, adapters_export=True), encoding="utf-8")
        _save_tensors(staging, adapter_weights, WEIGHTS_SAFETENSORS, WEIGHTS_PICKLE, weights_format)
        if head_config is not None:
            _write_json(staging / HEAD_CONFIG_FILE, {**common, "config": head_config})
            _save_tensors(staging, head_weights, HEAD_SAFETENSORS, HEAD_PICKLE, weights_format)
    return out


def _export_head(head: HeadConfig) -> dict[str, Any]:
    """The ``config`` of ``head_config.json`` for our head, or a refusal naming what adapters lacks."""
    if head.pooling != "cls":
        raise ConfigError(
            f"the head pools by {head.pooling!r}; adapters heads read the first token: export without the head"
        )
    common = {
        "layers": 2,
        "activation_function": "tanh",
        "use_pooler": False,
        "bias": True,
        "dropout_prob": head.dropout,
    }
    if head.type == "multiple_choice":
        if head.num_choices is None:
            raise ConfigError(
                "the multiple-choice head takes any number of choices; adapters needs a fixed "
                "num_choices: export without the head"
            )
        return {"head_type": "multiple_choice", "num_choices": head.num_choices, "label2id": None, **common}
    if head.type == "regression":
        return {"head_type": "classification", "num_labels": 1, "label2id": None, **common}
    return {
        "head_type": "classification",
        "num_labels": len(head.label_names),
        "label2id": {label: i for i, label in enumerate(head.label_names)},
        **common,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_tensors(
    directory: Path, tensors: dict[str, torch.Tensor], safetensors_name: str, pickle_name: str, weights_format: str
) -> None:
    if weights_format in ("safetensors", "both"):
        save_file(tensors, str(directory / safetensors_name))
    if weights_format in ("bin", "both"):
        torch.save(tensors, directory / pickle_name)
    for file in directory.iterdir():
        file.chmod(0o644)  # mkdtemp and safetensors create owner-only entries


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
