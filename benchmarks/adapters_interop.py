"""Does AdapterHub's ``adapters`` library load our exported adapter from ``ahl serve``? (issue 16)

The path an AdapterHub user takes with an adapter published here, end to end on real parts:

1. train a Pfeiffer adapter with a classification head on the embedded MiniLM (bundled
   sms_spam, one epoch: trained weights, not an initialisation);
2. export it to the ``adapters`` format (``ahl export --format adapters``, safetensors and the
   pickle both);
3. upload the exported directory to a real ``ahl serve`` on 127.0.0.1 with the stock
   ``HfApi.upload_folder`` (a plain Hub repository, not an ahl entry);
4. in the ``adapters`` venv that ``vs_adapters.py`` builds, ``AutoAdapterModel.load_adapter(REPO,
   source="hf")`` through ``HF_ENDPOINT`` (once reading the pickle, once ``use_safetensors``);
5. both libraries score the same held-out texts: the largest difference of any class
   probability, and whether every predicted label agrees.

    .venv/bin/python benchmarks/adapters_interop.py [--adapters-venv DIR] [--texts 200]

Prints a table and writes ``benchmarks/results/adapters_interop.json``. Exits 1 when a load
fails or the outputs differ by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _registry_remote import TOKEN, USER, serving  # noqa: E402
from vs_adapters import DEFAULT_VENV, ensure_adapters_venv  # noqa: E402

from adapterhub_lite import api, bundled  # noqa: E402
from adapterhub_lite.adapters_format import export_adapter  # noqa: E402
from adapterhub_lite.base import embedded_model_dir, load_base  # noqa: E402
from adapterhub_lite.config import TrainConfig  # noqa: E402
from adapterhub_lite.training.data import ExampleSet  # noqa: E402

DEFAULT_JSON = HERE / "results" / "adapters_interop.json"
REPO = f"{USER}/sms-spam-pfeiffer"
MAX_LENGTH = 64


def train_and_export(work: Path) -> tuple[Path, Path]:
    """The trained artifact and its ``adapters``-format export."""
    base = load_base()
    train = bundled.load("sms_spam", "train")
    dev = bundled.load("sms_spam", "dev")
    result = api.train(
        ExampleSet(train.examples[:400], train.source, train.sha256, train.columns_found),
        dev_data=ExampleSet(dev.examples[:100], dev.source, dev.sha256, dev.columns_found),
        task="sms_spam",
        base=base,
        out=work / "artifact",
        config=TrainConfig(epochs=1, learning_rate=1e-3, max_length=MAX_LENGTH, device="cpu"),
    )
    assert result.artifact is not None
    return result.artifact.path, export_adapter(result.artifact.path, work / "exported", weights_format="both")


def theirs(python: Path, endpoint: str, texts_file: Path, safetensors: bool) -> dict[str, Any]:
    """The ``adapters`` side, in its venv, reading the repository through ``HF_ENDPOINT``."""
    model_dir = embedded_model_dir()
    command = [
        str(python),
        str(HERE / "_adapters_interop_worker.py"),
        "--model-dir",
        str(model_dir),
        "--repo",
        REPO,
        "--texts",
        str(texts_file),
        "--max-length",
        str(MAX_LENGTH),
        *(["--safetensors"] if safetensors else []),
    ]
    with tempfile.TemporaryDirectory(prefix="ahl-interop-hf-home-") as home:
        # a fresh HF cache: every file comes from the server, none from an earlier run
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": home, "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("HF_HUB_OFFLINE", None)
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(ours: list[dict[str, float]], their: list[dict[str, float]]) -> dict[str, Any]:
    """The largest probability difference and the share of rows whose argmax labels agree."""
    pairs = list(zip(ours, their, strict=True))
    worst = max(abs(row[label] - other[label]) for row, other in pairs for label in row)
    agree = sum(max(row, key=row.__getitem__) == max(other, key=other.__getitem__) for row, other in pairs)
    return {"max_abs_diff": worst, "labels_agree": agree / len(ours)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--adapters-venv",
        type=Path,
        default=Path(os.environ.get("AHL_ADAPTERS_VENV", DEFAULT_VENV)),
        help="venv with adapters (created when missing, as vs_adapters.py does; env AHL_ADAPTERS_VENV)",
    )
    parser.add_argument("--texts", type=int, default=200, help="held-out texts both sides score")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest probability difference allowed")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    python = ensure_adapters_venv(args.adapters_venv)
    versions = subprocess.run(
        [str(python), "-c", "import adapters, transformers, huggingface_hub as h; "
         "print(adapters.__version__, transformers.__version__, h.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ahl-interop-") as tmp:
        work = Path(tmp)
        artifact, exported = train_and_export(work)
        texts = [e.text for e in bundled.load("sms_spam", "dev").examples[100 : 100 + args.texts]]
        texts_file = work / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
        ours = [p.probabilities or {} for p in api.predict(artifact, texts)]
        (work / "registry").mkdir()
        with serving(work / "registry", work / "serve.log") as server:
            from huggingface_hub import HfApi

            hub = HfApi(endpoint=server.url, token=TOKEN)
            hub.create_repo(REPO, exist_ok=True)
            hub.upload_folder(repo_id=REPO, folder_path=exported, commit_message="adapters-format export")
            rows = {}
            for label, safetensors in (("pickle (load_adapter default)", False), ("safetensors", True)):
                answer = theirs(python, server.url, texts_file, safetensors)
                rows[label] = {**answer, **(compare(ours, answer["probabilities"]) if "error" not in answer else {})}
                rows[label].pop("probabilities", None)
        files = sorted(p.name for p in exported.iterdir())

    report = {
        "adapters": versions[0],
        "transformers (adapters venv)": versions[1],
        "huggingface_hub (adapters venv)": versions[2],
        "repo": REPO,
        "files": files,
        "texts": len(texts),
        "tolerance": args.tolerance,
        "loads": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(
        f"adapters {versions[0]} (transformers {versions[1]}, huggingface_hub {versions[2]}) loads "
        f"{REPO} from ahl serve; {len(texts)} held-out sms_spam texts"
    )
    print(f"exported files: {', '.join(files)}")
    print("| load | result | max abs probability diff | labels agree | load s |\n|---|---|---:|---:|---:|")
    failed = False
    for label, row in rows.items():
        if "error" in row:
            failed = True
            print(f"| {label} | failed: {row['error']} | | | |")
            continue
        ok = row["max_abs_diff"] <= args.tolerance and row["labels_agree"] == 1.0
        failed |= not ok
        print(
            f"| {label} | {'same outputs' if ok else 'DIFFERENT'} | {row['max_abs_diff']:.2e} | "
            f"{row['labels_agree']:.0%} | {row['load_s']:.2f} |"
        )
    print(f"JSON: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
