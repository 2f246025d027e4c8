"""Reading data: formats, columns, labels, and each bad-input case with its message."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest

from adapterhub_lite import Columns, DataError, bundled
from adapterhub_lite.training.data import (
    bucketed_batches,
    collate,
    encode_labels,
    label_names_from,
    load_examples,
    split_dev,
    with_known_labels,
)

from .conftest import write_csv, write_jsonl

ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}, {"text": "fine", "label": "pos"}]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_every_file_format_reads_the_same_examples(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        write_csv(path, ROWS)
    elif suffix == ".tsv":
        write_csv(path, ROWS, delimiter="\t")
    elif suffix == ".jsonl":
        write_jsonl(path, ROWS)
    else:
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    data = load_examples(path, Columns())
    assert [(e.text, e.label) for e in data.examples] == [(r["text"], r["label"]) for r in ROWS]
    assert data.sha256 and len(data.sha256) == 64
    assert label_names_from(data) == ["neg", "pos"]


def test_datasets_directory_is_read(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    data = load_examples(tmp_path / "ds", Columns())
    assert [e.text for e in data.examples] == ["good film", "bad film", "fine"]


def test_text_pair_and_custom_columns(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"q": "a", "p": "b", "y": 1}, {"q": "c", "p": "d", "y": 0}])
    data = load_examples(path, Columns(text="q", text_pair="p", label="y"))
    assert (data.examples[0].text, data.examples[0].text_pair) == ("a", "b")
    assert label_names_from(data) == ["0", "1"]
    assert encode_labels(data, "classification", ["0", "1"]) == [1, 0]


def test_multiple_choice_from_list_or_columns(tmp_path):
    listed = write_jsonl(
        tmp_path / "mc.jsonl",
        [
            {"question": "sky?", "choices": ["blue", "green", "red"], "answer": "blue"},
            {
                "question": "grass?",
                "choices": {"label": ["A", "B", "C"], "text": ["blue", "green", "red"]},
                "answer": "B",
            },
            {"question": "blood?", "choices": ["blue", "green", "red"], "answer": 2},
        ],
    )
    data = load_examples(listed, Columns(text="question", choices="choices", label="answer"))
    assert encode_labels(data, "multiple_choice", []) == [0, 1, 2]
    swag = write_csv(tmp_path / "swag.csv", [{"ctx": "he", "e0": "runs", "e1": "sits", "label": "1"}])
    data = load_examples(swag, Columns(text="ctx", choices="e0,e1"))
    assert data.examples[0].choices == ["runs", "sits"]
    assert encode_labels(data, "multiple_choice", []) == [1]


def test_regression_labels_must_be_numbers(tmp_path):
    path = write_csv(tmp_path / "r.csv", [{"text": "a", "label": "0.5"}, {"text": "b", "label": "high"}])
    with pytest.raises(DataError, match=r"r.csv:3: label 'high' is not a number"):  # line 3: after the header
        encode_labels(load_examples(path, Columns()), "regression", [])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_examples(tmp_path / "nope.csv", Columns())


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="has no rows"):
        load_examples(path, Columns())


def test_unknown_column_lists_the_columns_there(tmp_path):
    path = write_csv(tmp_path / "d.csv", [{"sentence": "x", "label": "a"}])
    with pytest.raises(DataError) as err:
        load_examples(path, Columns(text="text"))
    assert "no column 'text'" in str(err.value) and "sentence, label" in str(err.value)
    assert str(err.value).endswith("(pick one with --text-column)")


def test_dev_label_unseen_in_train(tmp_path):
    dev = load_examples(write_csv(tmp_path / "dev.csv", [{"text": "x", "label": "neutral"}]), Columns())
    expected = "dev.csv:2: label 'neutral' does not occur in the training data; known labels: neg, pos"
    with pytest.raises(DataError, match=expected):
        encode_labels(dev, "classification", ["neg", "pos"])
    subset = dataclasses.replace(dev, examples=dev.examples, lines=None)  # a split has no file lines
    with pytest.raises(DataError, match="dev.csv: row 1: label 'neutral' does not occur"):
        encode_labels(subset, "classification", ["neg", "pos"])


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text .*re-save it as UTF-8"):
        load_examples(path, Columns())


def test_a_plain_directory_is_no_data_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_examples(tmp_path, Columns())


def test_unknown_format_and_bad_json(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unknown data format"):
        load_examples(tmp_path / "d.parquet", Columns())
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "b"}\n{oops\n')
    with pytest.raises(DataError, match=r"d.jsonl:2 is not valid JSON"):
        load_examples(tmp_path / "d.jsonl", Columns())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # an unclosed quote would swallow every later line into one text
        ('text,label\ngood,pos\n"bad film,neg\nfine,pos\n', r"d.csv:3: malformed quoting \(unexpected end of data\)"),
        # closed by the next row's quote: one garbage text over three lines
        ('text,label\n"bad film,neg\nfine,pos\n"ok",pos\n', r"d.csv:2: malformed quoting .*written as two"),
        ("text,label,text\na,pos,b\n", r"d.csv:1: column 'text' appears 2 times in the header"),
        # a quoted field over two lines is fine; the row after it is counted from its own line
        ('text,label\n"two\nlines",pos\nnice, really,pos\n', r"d.csv:4: 3 fields, but the header has 2; a text"),
        ("text,label\nonly a text\n", r"d.csv:2: 1 field, but the header has 2"),
    ],
)
def test_malformed_csv_is_refused_at_its_line(tmp_path, content, message):
    """csv's lenient reading would turn each of these into wrong examples without a word."""
    path = tmp_path / "d.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_examples(path, Columns())


def test_a_null_or_non_text_text_is_refused_at_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": null, "label": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:3: 'text' is null; give the row a text or remove it"):
        load_examples(path, Columns())
    pair = write_jsonl(tmp_path / "p.jsonl", [{"text": "a", "p": ["b"], "label": "x"}])
    with pytest.raises(DataError, match=r"p.jsonl:1: 'p' is a JSON list, not a text"):
        load_examples(pair, Columns(text_pair="p"))
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"text": "a", "label": "x"}, {"text": None, "label": "y"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"a.json: row 2: 'text' is null"):
        load_examples(array, Columns(), require_label=False)


def test_an_empty_text_or_label_is_refused_at_its_line(tmp_path):
    """An empty field (a CSV export's missing value) trained on no words; now refused with
    FILE:LINE, as an empty label was (that one said "row N" and counted without the header)."""
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,label\nhello,a\n,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d.csv:3: 'text' is empty; give the row a text or remove it"):
        load_examples(csv_path, Columns())
    spaces = write_jsonl(tmp_path / "s.jsonl", [{"text": "a", "label": "x"}, {"text": " \t", "label": "y"}])
    with pytest.raises(DataError, match=r"s.jsonl:2: 'text' is empty"):
        load_examples(spaces, Columns(), require_label=False)
    no_label = tmp_path / "l.csv"
    no_label.write_text("text,label\nhello,a\nworld,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"l.csv:3: the 'label' value is empty; give the row a label or remove it"):
        load_examples(no_label, Columns())
    assert [e.text for e in load_examples(no_label, Columns(), require_label=False).examples] == ["hello", "world"]


def test_a_json_record_without_a_key_the_others_have_is_named_at_its_line(tmp_path):
    """It said "no column 'text'; columns there: text": the columns of the first record."""
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "hi", "label": "a"}, {"txt": "x", "label": "b"}])
    with pytest.raises(DataError, match=r"r.jsonl:2: the row has no 'text' \(it has: txt, label\); give it one or"):
        load_examples(path, Columns())
    with pytest.raises(DataError, match=r"r.jsonl: no column 'body'; columns there: text, label \(pick one with"):
        load_examples(path, Columns(text="body"))
    lines = tmp_path / "texts.txt"  # one text per line, as predict reads it: eval and train read TSV
    lines.write_text("good\nbad\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"no column 'text'; columns there: good .*; a .txt is read as TSV with a header"
    ):
        load_examples(lines, Columns())


def test_a_malformed_data_file_fails_the_cli_in_one_line(tmp_path):
    from .test_cli import ahl_in_process, assert_one_line_error

    data = tmp_path / "train.csv"
    data.write_text('text,label\n"unclosed,pos\nb,neg\n', encoding="utf-8")
    proc = ahl_in_process("train", "--train", data, "--task", "t", "--out", tmp_path / "out")
    assert_one_line_error(proc, f"{data}:2: malformed quoting")
    assert proc.returncode == DataError.exit_code and not (tmp_path / "out").exists()


def test_dev_split_is_seeded_and_disjoint(tmp_path):
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(50)]
    data = load_examples(write_csv(tmp_path / "d.csv", rows), Columns())
    train_a, dev_a = split_dev(data, 0.2, seed=3)
    train_b, dev_b = split_dev(data, 0.2, seed=3)
    assert [e.text for e in dev_a.examples] == [e.text for e in dev_b.examples]
    assert len(dev_a) == 10 and len(train_a) == 40
    assert not {e.text for e in dev_a.examples} & {e.text for e in train_a.examples}


def test_a_classification_dev_split_keeps_class_shares_and_every_class_in_train(tmp_path):
    """A random split of 31 rows puts the one "rare" row in dev for some seeds, and training then
    failed on a dev label the head never saw; by class, every class keeps a training row."""
    rows = [{"text": "the one rare row", "label": "rare"}]
    rows += [{"text": f"t{i}", "label": "a" if i < 24 else "b"} for i in range(30)]
    data = load_examples(write_csv(tmp_path / "d.csv", rows), Columns())
    rare_in_dev = [seed for seed in range(40) if "rare" in {e.label for e in split_dev(data, 0.1, seed)[1].examples}]
    assert rare_in_dev, "the plain split must show the failure this test is about"
    for seed in range(40):
        train, dev = split_dev(data, 0.1, seed, by_label=True)
        assert sorted(e.text for e in train.examples + dev.examples) == sorted(r["text"] for r in rows)
        assert [e.label for e in dev.examples].count("a") == 2 and [e.label for e in dev.examples].count("b") == 1
        assert "rare" in {e.label for e in train.examples} and len(dev) == 3
    first, again = split_dev(data, 0.1, 5, by_label=True)[1], split_dev(data, 0.1, 5, by_label=True)[1]
    assert [e.text for e in first.examples] == [e.text for e in again.examples]


def test_train_without_dev_keeps_a_rare_class_for_every_seed(tmp_path, tiny_base_dir):
    """``ahl train`` without --dev, at a seed whose plain random split would hold out the only row
    of a class: it trains, and the head knows every class of the file."""
    from .test_cli import ahl_in_process

    rows = [{"text": "the one rare row", "label": "rare"}]
    rows += [{"text": f"message {i}", "label": "ab"[i % 2]} for i in range(30)]
    path = write_csv(tmp_path / "train.csv", rows)
    data = load_examples(path, Columns())
    seed = next(s for s in range(100) if "rare" in {e.label for e in split_dev(data, 0.1, s)[1].examples})
    args = ("--base", tiny_base_dir, "--task", "t", "--epochs", "1", "--seed", str(seed), "--json")
    proc = ahl_in_process("train", "--train", path, "--out", tmp_path / "out", *args)
    assert proc.returncode == 0, proc.stderr
    head = json.loads((tmp_path / "out" / "adapter.json").read_text())["head"]
    assert head["label_names"] == ["a", "b", "rare"]


def test_a_class_too_small_to_split_gives_its_share_to_the_others(tmp_path):
    rows = [{"text": f"s{i}", "label": "small"} for i in range(2)]
    rows += [{"text": f"b{i}", "label": "big"} for i in range(6)]
    data = load_examples(write_csv(tmp_path / "d.csv", rows), Columns())
    train, dev = split_dev(data, 0.5, seed=0, by_label=True)  # 4 of 8: small can give only 1
    assert sorted(e.label for e in dev.examples) == ["big", "big", "big", "small"] and len(train) == 4


def test_with_known_labels_drops_the_classes_train_lacks(tmp_path):
    train = load_examples(write_csv(tmp_path / "t.csv", ROWS), Columns())
    rows = [{"text": "odd", "label": "other"}, {"text": "ok", "label": "pos"}, {"text": "meh", "label": "neg"}]
    kept = with_known_labels(load_examples(write_csv(tmp_path / "d.csv", rows), Columns()), train)
    assert [e.text for e in kept.examples] == ["ok", "meh"] and kept.source.endswith("d.csv")


def test_a_dev_split_of_single_row_classes_is_refused(tmp_path):
    rows = [{"text": f"t{i}", "label": f"class{i}"} for i in range(5)]
    data = load_examples(write_csv(tmp_path / "d.csv", rows), Columns())
    with pytest.raises(DataError, match=r"every class in training \(each class needs two rows\); give a --dev file"):
        split_dev(data, 0.2, seed=0, by_label=True)


def test_collate_pads_dynamically_and_buckets_cover_everything():
    features = [{"input_ids": [1] * n, "attention_mask": [1] * n} for n in (3, 7, 5)]
    batch = collate(features, pad_id=0)
    assert batch["input_ids"].shape == (3, 7)
    assert batch["attention_mask"].sum().item() == 15
    lengths = [3, 90, 4, 88, 5, 87, 6, 86]
    batches = bucketed_batches(lengths, 2, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    # similar lengths share a batch: no batch mixes a short and a long example
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) < 10 for b in batches)


def test_multiple_choice_needs_one_number_of_choices(tmp_path):
    path = write_jsonl(
        tmp_path / "mc.jsonl",
        [{"text": "q", "choices": ["a", "b"], "label": 0}, {"text": "q", "choices": ["a", "b", "c"], "label": 0}],
    )
    with pytest.raises(DataError, match=r"same number of choices; found \[2, 3\]"):
        load_examples(path, Columns(choices="choices"))


@pytest.mark.parametrize("spec", ["hf:", "hf:glue", "hf:glue::train", "hf:a:b:c:d"])
def test_malformed_hub_dataset_names(spec):
    with pytest.raises(DataError, match="write a hub dataset as hf:NAME:SPLIT"):
        load_examples(spec, Columns())


def closed_port() -> int:
    with socket.socket() as probe:  # bound and closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_hub_fails_a_hub_dataset_at_once(tmp_path, monkeypatch):
    """Without a connection, datasets retried for about 23 s and printed a dozen lines; one probe
    of the endpoint (here a closed local port) answers in one line with the offline fix."""
    from huggingface_hub import constants

    from .test_cli import ahl_in_process, assert_one_line_error

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    proc = ahl_in_process("train", "--train", "hf:someone/nope:train", "--task", "t", "--out", tmp_path / "out")
    assert_one_line_error(proc, f"{constants.ENDPOINT} cannot be reached; check the network, or set HF_HUB_OFFLINE=1")
    assert proc.returncode == DataError.exit_code and not (tmp_path / "out").exists()
    monkeypatch.setenv("AHL_OFFLINE", "1")
    with pytest.raises(DataError, match="hf:someone/nope:train: AHL_OFFLINE is set; check the network, or set"):
        load_examples("hf:someone/nope:train", Columns())


def test_offline_mode_reads_only_the_datasets_cache_and_says_so(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "adapterhub_lite", "train", "--train", "hf:someone/nope:train", "--task", "t"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == DataError.exit_code and "Retrying" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "HF_HUB_OFFLINE is set: only the datasets cache was read" in proc.stderr


def test_datasets_directory_with_several_splits_is_refused(tmp_path):
    import datasets

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "dev": datasets.Dataset.from_list(ROWS)})
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="holds several splits .*point at one split"):
        load_examples(tmp_path / "dd", Columns())
    assert len(load_examples(tmp_path / "dd" / "train", Columns())) == 3


def test_bundled_overlap_is_found_and_dropped():
    """rotten_tomatoes and vader_movies share texts (up to case and spacing); a target's data
    must be able to drop what a source adapter trained on."""
    movies = bundled.load("vader_movies", "dev")
    seen = bundled.texts_of(["rotten_tomatoes"])
    kept = bundled.without_texts(movies, seen)
    assert 0 < len(kept) < len(movies)
    assert not {bundled.text_key(e.text) for e in kept.examples} & seen
    assert bundled.text_key("  A  Fine\tFilm ") == "a fine film"
    assert len(bundled.load("trec", "train", limit=7)) == 7
