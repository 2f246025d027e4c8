"""Property tests of the client's checks on what a server sends (registry/format/boundary.py), of refs
and of the blob store's digest -> path mapping: for any input, either a typed refusal or a
value that cannot name a path outside its directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapterhub_lite.errors import IntegrityError, RefError, RemoteError
from adapterhub_lite.registry.format.blobs import BlobStore
from adapterhub_lite.registry.format.boundary import check_file_record, check_files, merge_files, read_bounded
from adapterhub_lite.registry.format.refs import SEGMENT, check_file_path, parse_ref

# Text a hostile server would try: path syntax, NUL, non-ASCII look-alikes, hex.
HOSTILE = st.lists(st.sampled_from([*"ab.-_/\\\0\x85é0f9A ", "..", "../", "/"]), max_size=20).map("".join)
NAMES = st.one_of(HOSTILE, st.text(max_size=30), st.sampled_from(["adapter.json", "a/b", "a", "..", "/etc/x"]))
SHA = "a" * 64
settings.register_profile(
    "ahl", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("ahl")


def inside(root: Path, name: str) -> bool:
    return os.path.normpath(root / name).startswith(str(root) + os.sep)


@given(NAMES)
def test_a_checked_file_path_stays_inside_its_directory(name):
    try:
        checked = check_file_path(name)
    except RefError as exc:
        assert "\n" not in str(exc)
        return
    assert "\0" not in checked and not checked.startswith("/")
    assert all(SEGMENT.fullmatch(part) and ".." not in part for part in checked.split("/"))
    assert inside(Path("/root"), checked)


@given(st.one_of(HOSTILE, st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=66)))
def test_the_blob_store_names_no_path_but_its_own(tmp_path_factory, digest):
    store = BlobStore(tmp_path_factory.getbasetemp() / "store")
    try:
        path = store.path(digest)
    except IntegrityError:
        return
    assert path.parent.parent == store.dir and path.name == digest and len(digest) == 64


@given(
    st.dictionaries(
        NAMES,
        st.fixed_dictionaries(
            {"sha256": st.sampled_from([SHA, "../x", "A" * 64]), "size": st.sampled_from([0, 5, -1, 10**15, True])}
        ),
        max_size=6,
    )
)
def test_checked_file_lists_are_safe_and_clash_free(files):
    try:
        merged = merge_files([{"adapter.json": {"sha256": SHA, "size": 1}}, check_files(files, "server")], "server")
    except RemoteError as exc:
        assert "\n" not in str(exc)
        return
    assert merged["adapter.json"] == {"sha256": SHA, "size": 1}  # never overridden
    for name, record in merged.items():
        assert inside(Path("/root"), name)
        assert record["sha256"] == SHA and 0 <= record["size"] <= 1 << 40
        assert not any(other.startswith(name + "/") for other in merged)


@given(st.text(max_size=60))
def test_parse_ref_is_total_and_round_trips(text):
    try:
        ref = parse_ref(text, base="org/model")
    except RefError as exc:
        assert "\n" not in str(exc) or "\n" in text
        return
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    "record",
    [None, [], {"sha256": SHA}, {"sha256": SHA, "size": 1.5}, {"sha256": SHA, "size": False}, {"sha256": 5, "size": 1}],
)
def test_malformed_records_are_refused(record):
    with pytest.raises(RemoteError):
        check_file_record("f", record, "server")


def test_a_file_cannot_also_be_a_directory():
    with pytest.raises(RemoteError, match="both as a file and as a directory"):
        merge_files(
            [{"adapters": {"sha256": SHA, "size": 1}}, {"adapters/x/adapter.json": {"sha256": SHA, "size": 1}}],
            "server",
        )


def test_bounded_read_stops_at_the_cap():
    pulled = []

    def chunks():
        for _ in range(1000):
            pulled.append(1)
            yield b"x" * 1024

    with pytest.raises(RemoteError, match="more than"):
        read_bounded(chunks(), 10 * 1024, "server")
    assert len(pulled) == 11  # the 11th chunk passed the cap; nothing after it was asked for
