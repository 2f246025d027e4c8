"""Data: read CSV, TSV, JSON Lines or `datasets` sources into examples, tokenise, batch.

A data source is a path (``.csv``, ``.tsv``, ``.jsonl``/``.json``, or a directory written by
``datasets.Dataset.save_to_disk``) or ``hf:NAME[:CONFIG]:SPLIT`` for a dataset on the Hugging
Face Hub (needs the optional ``datasets`` package and a machine that reaches the Hub).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError
from ..files import sha256_file
from ..network import hub_reachable, offline

if TYPE_CHECKING:  # imported in collate, the one place tensors are made: reading data needs no torch
    import torch

HUB_PREFIX = "hf:"


@dataclass
class Columns:
    """Which columns hold what. ``choices`` names one list column or several comma-separated."""

    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    choices: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Columns:
        return cls(**{k: data[k] for k in ("text", "text_pair", "label", "choices") if k in data})


@dataclass
class Example:
    """One input: a text (question or context), an optional second text or candidate answers."""

    text: str
    text_pair: str | None = None
    choices: list[str] | None = None
    label: Any = None


@dataclass
class ExampleSet:
    """Examples read from one source, with the source's name and digest for provenance."""

    examples: list[Example]
    source: str
    sha256: str | None = None
    columns_found: list[str] = field(default_factory=list)
    # the file line each example starts on, as read (CSV, TSV, JSON Lines); a subset or a split
    # of the examples has none
    lines: list[int] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def where(self, index: int) -> str:
        """Where example ``index`` (0-based) is, for a message: ``FILE:LINE`` or ``FILE: row N``."""
        return _where(self.source, self._lines(), index)

    def select(self, indices: Iterable[int], *, note: str | None = None) -> ExampleSet:
        """The examples at ``indices``, in that order, keeping this set's provenance (source,
        digest, columns) and file lines; ``note`` marks the source, e.g. ``dev split``."""
        chosen = list(indices)
        lines = self._lines()
        return ExampleSet(
            [self.examples[i] for i in chosen],
            f"{self.source} ({note})" if note else self.source,
            self.sha256,
            self.columns_found,
            [lines[i] for i in chosen] if lines else None,
        )

    def _lines(self) -> list[int] | None:
        return self.lines if self.lines and len(self.lines) == len(self.examples) else None


def _where(source: str, lines: list[int] | None, index: int) -> str:
    return f"{source}:{lines[index]}" if lines else f"{source}: row {index + 1}"


# -- reading ----------------------------------------------------------------------------------


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8") from None


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], list[int] | None]:
    """The rows of a data file, and the line each starts on (None for a JSON array, whose rows
    are numbered instead)."""
    suffix = path.suffix.lower()
    text = _decode(path)
    if suffix in (".jsonl", ".json"):
        stripped = text.lstrip()
        numbers: list[int] = []
        if suffix == ".json" and stripped.startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        else:
            rows = []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number} is not valid JSON: {exc.msg}") from None
                numbers.append(number)
        if any(not isinstance(row, dict) for row in rows):
            raise DataError(f"{path}: every JSON line must be an object with named fields")
        return rows, numbers or None
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_delimited(path, text, "\t" if suffix in (".tsv", ".txt") else ",")
    raise DataError(f"{path}: unknown data format {suffix!r}; use .csv, .tsv, .jsonl or .json")


def _read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of a CSV or TSV file and the line each starts on (a quoted field may span lines).

    csv's lenient defaults turn damage into wrong data without a word: an unclosed quote swallows
    every following line into one text, a repeated column name keeps only the last column, and a
    text with an unquoted delimiter spills into the label column. Each is refused at its line.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    shown = "a tab" if delimiter == "\t" else f"a {delimiter!r}"
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    start = 1  # the line the record being read starts on
    try:
        header = next(reader, [])
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise DataError(
                f"{path}:1: column {repeated[0]!r} appears {header.count(repeated[0])} times in the header; "
                "give each column its own name"
            )
        start = reader.line_num + 1
        for fields in reader:
            if fields:  # a blank line is no row
                if len(fields) != len(header):
                    raise DataError(
                        f"{path}:{start}: {len(fields)} field{'s' * (len(fields) != 1)}, but the header has "
                        f"{len(header)}; a text that holds {shown} goes in double quotes"
                    )
                rows.append(dict(zip(header, fields, strict=True)))
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(
            f"{path}:{start}: malformed quoting ({exc}); a field that starts with a double quote must end "
            'with one, and a quote inside it is written as two ("")'
        ) from None
    return rows, lines


def _read_datasets(source: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"reading {source} needs the 'datasets' package: pip install 'adapterhub-lite[datasets]'"
        ) from None
    if source.startswith(HUB_PREFIX):
        parts = source[len(HUB_PREFIX) :].split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise DataError(f"{source}: write a hub dataset as hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT")
        name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE and not hub_reachable():
            # datasets would retry for half a minute, and reads its cache alone only in offline mode
            why = "AHL_OFFLINE is set" if offline() else f"{constants.ENDPOINT} cannot be reached"
            raise DataError(
                f"cannot load dataset {source}: {why}; check the network, or set HF_HUB_OFFLINE=1 to read "
                "the dataset from the datasets cache"
            )
        try:
            data = datasets.load_dataset(name, config, split=split)
        except Exception as exc:  # datasets raises many unrelated types for "not found"
            cache_only = "; HF_HUB_OFFLINE is set: only the datasets cache was read" if constants.HF_HUB_OFFLINE else ""
            raise DataError(f"cannot load dataset {source}: {str(exc).splitlines()[0]}{cache_only}") from None
    else:
        data = datasets.load_from_disk(source)
        if isinstance(data, datasets.DatasetDict):
            raise DataError(f"{source} holds several splits ({', '.join(data)}); point at one split")
    return [dict(row) for row in data]


def read_rows(source: str | Path) -> tuple[list[dict[str, Any]], str | None, list[int] | None]:
    """Read a source into rows (dicts), the sha256 of its file (where it is one file), and the
    line of the file each row starts on (where it has lines: CSV, TSV, JSON Lines)."""
    text = str(source)
    if text.startswith(HUB_PREFIX):
        return _read_datasets(text), None, None
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        markers = ("dataset_info.json", "state.json", "dataset_dict.json")  # written by save_to_disk
        if any((path / marker).is_file() for marker in markers):
            return _read_datasets(str(path)), None, None
        raise DataError(f"{path} is a directory, not a data file")
    rows, lines = _read_rows(path)
    if not rows:
        raise DataError(f"data file {path} has no rows")
    return rows, sha256_file(path), lines


def _column(row: dict[str, Any], name: str, columns_found: list[str], source: str, role: str, where: str) -> Any:
    """``row[name]``. A column the file lacks names the ones there (``columns_found``: the first
    row's) and the option (``--ROLE-column``) that picks another; a JSON record that lacks a key
    the others have is named by ``where`` (FILE:LINE, or FILE: row N) with the keys it has."""
    if name not in row:
        if name in columns_found:
            raise DataError(
                f"{where}: the row has no {name!r} (it has: {', '.join(row) or 'nothing'}); "
                "give it one or remove the row"
            )
        # predict reads a .txt as one text per line; every other reader takes it as TSV with a header
        txt = "; a .txt is read as TSV with a header row here" if source.lower().endswith(".txt") else ""
        raise DataError(
            f"{source}: no column {name!r}; columns there: {', '.join(columns_found) or '(none)'} "
            f"(pick one with --{role}-column){txt}"
        )
    return row[name]


def _choices(row: dict[str, Any], spec: str, found: list[str], source: str, where: str) -> list[str]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(names) > 1:
        return [str(_column(row, n, found, source, "choices", where)) for n in names]
    value = _column(row, names[0], found, source, "choices", where)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{source}: column {names[0]!r} must hold a JSON list of answers") from None
    if isinstance(value, dict) and "text" in value:  # CommonsenseQA style {"label": [...], "text": [...]}
        value = value["text"]
    if not isinstance(value, list) or len(value) < 2:
        raise DataError(f"{source}: column {names[0]!r} must hold a list of at least two answers")
    return [str(v) for v in value]


def load_examples(source: str | Path, columns: Columns, *, require_label: bool = True) -> ExampleSet:
    """Read examples from a source, checking that the named columns exist.

    Raises:
        DataError: missing, empty, non-UTF-8 or malformed file; an unknown column (the message
            lists the columns that are there); an empty text.
    """
    rows, digest, lines = read_rows(source)
    name = str(source)
    found = list(rows[0].keys())
    examples = []
    for number, row in enumerate(rows, 1):
        where = _where(name, lines, number - 1)
        text = _column(row, columns.text, found, name, "text", where) if columns.text else ""
        pair = _column(row, columns.text_pair, found, name, "text-pair", where) if columns.text_pair else None
        for column, value in ((columns.text, text), (columns.text_pair, pair if columns.text_pair else "")):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                # JSON null (or a list, an object) would be read as the text "None" or "[...]"
                what = "null" if value is None else f"a JSON {type(value).__name__}, not a text"
                raise DataError(f"{where}: {column!r} is {what}; give the row a text or remove it")
        if columns.text and not str(text).strip():
            # an empty field (a CSV export's missing value, most often) would train on no words
            raise DataError(f"{where}: {columns.text!r} is empty; give the row a text or remove it")
        choices = _choices(row, columns.choices, found, name, where) if columns.choices else None
        label = _column(row, columns.label, found, name, "label", where) if require_label else row.get(columns.label)
        if require_label and (label is None or (isinstance(label, str) and not label.strip())):
            raise DataError(f"{where}: the {columns.label!r} value is empty; give the row a label or remove it")
        examples.append(Example(str(text or ""), None if pair is None else str(pair), choices, label))
    counts = {len(e.choices) for e in examples if e.choices is not None}
    if len(counts) > 1:
        # batches stack candidates as [batch, choices, seq]: one count per data set
        raise DataError(f"{name}: every row needs the same number of choices; found {sorted(counts)}")
    return ExampleSet(examples, name, digest, found, lines)


# -- labels -------------------------------------------------------------------------------------


def label_names_from(train: ExampleSet) -> list[str]:
    """The label vocabulary of a classification task: the sorted distinct train labels."""
    return sorted({_label_text(e.label) for e in train.examples})


def with_known_labels(data: ExampleSet, train: ExampleSet) -> ExampleSet:
    """``data`` without the rows of classes ``train`` lacks: a classifier learns its labels from
    train, so it can be neither selected nor scored on others (a few rows of a file can miss a
    rare class)."""
    known = set(label_names_from(train))
    return data.select(i for i, e in enumerate(data.examples) if _label_text(e.label) in known)


def _label_text(label: Any) -> str:
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return str(label).strip()


def encode_labels(data: ExampleSet, head_type: str, label_names: Sequence[str]) -> list[Any]:
    """Map each example's label to what the loss wants: class index, float, or answer index."""
    index = {name: i for i, name in enumerate(label_names)}
    out: list[Any] = []
    for number, example in enumerate(data.examples, 1):
        label = example.label
        if head_type == "classification":
            text = _label_text(label)
            if text not in index:
                raise DataError(
                    f"{data.where(number - 1)}: label {text!r} does not occur in the training data; "
                    f"known labels: {', '.join(label_names)}"
                )
            out.append(index[text])
        elif head_type == "regression":
            try:
                out.append(float(label))
            except (TypeError, ValueError):
                raise DataError(f"{data.where(number - 1)}: label {label!r} is not a number") from None
        else:
            out.append(_answer_index(label, example.choices or [], data.where(number - 1)))
    return out


def _answer_index(label: Any, choices: list[str], where: str) -> int:
    text = _label_text(label)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(choices):
        return int(text)
    if text in choices:
        return choices.index(text)
    if len(text) == 1 and text.isalpha() and ord(text.upper()) - ord("A") < len(choices):
        return ord(text.upper()) - ord("A")
    raise DataError(f"{where}: answer {text!r} is neither an index, a letter nor one of the {len(choices)} choices")


def split_dev(train: ExampleSet, share: float, seed: int, *, by_label: bool = False) -> tuple[ExampleSet, ExampleSet]:
    """Hold out a seeded random share of train as dev (``--dev-split``).

    With ``by_label`` (a classification head) the share is taken from each class in proportion
    and every class keeps at least one training example: a purely random split of a small file can
    put all of a rare class in dev, where the head, which learns its labels from train, cannot
    score it, and it leaves small dev sets with class shares far from the data's.
    """
    rng = random.Random(seed)
    cut = max(1, int(round(len(train) * share)))
    if by_label:
        held = _stratified_pick(train, cut, rng)
        if not held:
            raise DataError(
                f"{train.source}: too few rows to hold out a dev split that keeps every class in "
                "training (each class needs two rows); give a --dev file"
            )
    else:
        order = list(range(len(train)))
        rng.shuffle(order)
        held = order[:cut]
    if len(held) >= len(train):
        raise DataError(f"{train.source}: too few rows ({len(train)}) to hold out a dev split")
    chosen = set(held)
    rest = train.select(i for i in range(len(train)) if i not in chosen)
    return rest, train.select(sorted(chosen), note="dev split")


def _stratified_pick(train: ExampleSet, cut: int, rng: random.Random) -> list[int]:
    """About ``cut`` row indices, shared among the classes in proportion to their sizes (largest
    remainders first), at most all but one row of each class, each class's rows chosen at random."""
    rows: dict[str, list[int]] = {}
    for i, example in enumerate(train.examples):
        rows.setdefault(_label_text(example.label), []).append(i)
    labels = sorted(rows)  # a fixed order: the same seed always holds out the same rows
    quota = {label: cut * len(rows[label]) / len(train) for label in labels}
    count = {label: min(int(quota[label]), len(rows[label]) - 1) for label in labels}
    by_remainder = sorted(labels, key=lambda label: (-(quota[label] - int(quota[label])), label))
    while sum(count.values()) < cut:  # more than one round when a capped class leaves rows over
        open_labels = [label for label in by_remainder if count[label] < len(rows[label]) - 1]
        if not open_labels:
            break
        for label in open_labels[: cut - sum(count.values())]:
            count[label] += 1
    held: list[int] = []
    for label in labels:
        held += rng.sample(rows[label], count[label])
    return held


# -- tokenising and batching --------------------------------------------------------------------


@dataclass
class Encoded:
    """Token ids per example (a list of candidates for multiple choice), and the targets."""

    features: list[dict[str, list[Any]]]
    targets: list[Any] | None
    lengths: list[int]


def tokenize(tokenizer: Any, data: ExampleSet, max_length: int, targets: list[Any] | None) -> Encoded:
    """Tokenise every example once, truncated but unpadded (padding happens per batch)."""
    examples = data.examples
    # A multiple-choice set: every example has its candidates (one ``choices`` column spec).
    choice_lists = [e.choices for e in examples if e.choices is not None]
    if choice_lists:
        firsts = [e.text for e, choices in zip(examples, choice_lists, strict=True) for _ in choices]
        seconds = [c for choices in choice_lists for c in choices]
        enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
        features, start = [], 0
        for choices in choice_lists:
            n = len(choices)
            features.append({k: v[start : start + n] for k, v in enc.items()})
            start += n
        lengths = [max(len(ids) for ids in f["input_ids"]) for f in features]
        return Encoded(features, targets, lengths)
    pairs = [e.text_pair for e in examples]
    texts = [e.text for e in examples]
    enc = tokenizer(texts, pairs if any(p is not None for p in pairs) else None, truncation=True, max_length=max_length)
    features = [{k: v[i] for k, v in enc.items()} for i in range(len(examples))]
    return Encoded(features, targets, [len(f["input_ids"]) for f in features])


def collate(features: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence (dynamic padding); 3-D for multiple choice."""
    import torch

    multiple = isinstance(features[0]["input_ids"][0], list)
    seqs = [s for f in features for s in f["input_ids"]] if multiple else [f["input_ids"] for f in features]
    width = max(len(s) for s in seqs)
    batch: dict[str, torch.Tensor] = {}
    for key in features[0]:
        fill = pad_id if key == "input_ids" else 0
        rows = [s for f in features for s in f[key]] if multiple else [f[key] for f in features]
        tensor = torch.full((len(rows), width), fill, dtype=torch.long)
        for i, row in enumerate(rows):
            tensor[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        if multiple:
            tensor = tensor.view(len(features), -1, width)
        batch[key] = tensor
    if "attention_mask" not in batch:
        batch["attention_mask"] = (batch["input_ids"] != pad_id).long()
    return batch


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, window: int = 50) -> list[list[int]]:
    """Shuffled batches of similar-length examples, so that dynamic padding pads little.

    Indices are shuffled, sorted by length inside windows of ``window`` batches, cut into
    batches, and the batches shuffled again: every epoch differs, padding stays small.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Batches in length order, for evaluation (the caller restores the original order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
