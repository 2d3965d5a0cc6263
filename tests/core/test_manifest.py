from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weightvault.core.errors import FormatError
from weightvault.core.manifest import INLINE_MAX_SIZE, FileEntry, FileRecipe, Manifest

_path_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.é", min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..")
)
_paths = st.lists(_path_part, min_size=1, max_size=3).map("/".join)
_sha = st.binary(min_size=8, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
_entries = st.dictionaries(_paths, st.tuples(st.integers(0, 2**40), _sha), max_size=8)


@given(
    _entries,
    st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=10), max_size=3),
    st.text(max_size=20),
)
def test_manifest_round_trip_and_stable_id(
    entries: dict[str, tuple[int, str]], meta: dict[str, str], msg: str
) -> None:
    files = tuple(FileEntry(p, size, sha) for p, (size, sha) in entries.items())
    m = Manifest("org/model", files, parent=None, message=msg, metadata=meta)
    again = Manifest.from_bytes(m.to_bytes())
    assert again.to_bytes() == m.to_bytes()
    assert again.commit_id() == m.commit_id()
    # order of files does not matter; content does
    shuffled = Manifest("org/model", tuple(reversed(files)), message=msg, metadata=meta)
    assert shuffled.commit_id() == m.commit_id()
    assert len(m.commit_id()) == 40


def test_commit_id_depends_on_tree_metadata_and_parent() -> None:
    f = (FileEntry("a.bin", 3, hashlib.sha256(b"abc").hexdigest()),)
    base = Manifest("m", f)
    assert Manifest("m", f).commit_id() == base.commit_id()
    assert Manifest("m", f, metadata={"k": "v"}).commit_id() != base.commit_id()
    assert Manifest("m", f, parent="0" * 40).commit_id() != base.commit_id()
    assert Manifest("m", (FileEntry("b.bin", 3, f[0].sha256),)).commit_id() != base.commit_id()
    assert Manifest("other", f).commit_id() != base.commit_id()


def test_manifest_refuses_unsafe_or_duplicate_paths() -> None:
    sha = hashlib.sha256(b"").hexdigest()
    with pytest.raises(FormatError):
        Manifest("m", (FileEntry("a", 0, sha), FileEntry("a", 0, sha)))
    with pytest.raises(FormatError):
        Manifest.from_bytes(
            b'{"format": 1, "model": "m", "files": [{"path": "../x", "size": 0, "sha256": "'
            + sha.encode()
            + b'"}]}'
        )
    with pytest.raises(FormatError):
        Manifest.from_bytes(b"not json")
    with pytest.raises(FormatError):
        Manifest.from_bytes(b'{"format": 99}')


@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.integers(1, 2**22)), max_size=20))
def test_recipe_round_trip(chunks: list[tuple[bytes, int]]) -> None:
    r = FileRecipe("ab" * 32, sum(n for _, n in chunks), tuple(chunks))
    assert FileRecipe.from_bytes(r.to_bytes()) == r


def test_recipe_sizes_must_add_up() -> None:
    with pytest.raises(FormatError):
        FileRecipe("ab" * 32, 10, ((b"x" * 32, 5),))


def test_safety_findings_round_trip_and_leave_other_commit_ids_alone() -> None:
    files = (FileEntry("model.bin", 10, "a" * 64), FileEntry("config.json", 2, "b" * 64))
    plain = Manifest("m", files)
    assert b"safety" not in plain.to_bytes()  # a manifest without findings keeps its old bytes
    finding = {"format": "zip", "verdict": "dangerous", "globals": [["posix", "system", "dangerous"]]}
    scanned = Manifest("m", files, safety={"model.bin": finding})
    again = Manifest.from_bytes(scanned.to_bytes())
    assert again.safety == {"model.bin": finding} and again.commit_id() == scanned.commit_id()
    assert scanned.commit_id() != plain.commit_id()
    with pytest.raises(FormatError, match="safety"):
        Manifest("m", files, safety={"elsewhere.bin": finding})


_SHA = "a" * 64


def test_a_manifest_without_inline_recipes_keeps_format_1_and_its_bytes() -> None:
    m = Manifest("m", (FileEntry("w.bin", 3, _SHA),))
    expected = (
        '{"files":[{"path":"w.bin","sha256":"' + _SHA + '","size":3}],"format":1,"lineage":[],'
        '"message":"","metadata":{},"model":"m","parent":null}'
    ).encode()
    assert m.to_bytes() == expected
    assert m.commit_id() == hashlib.sha256(expected).hexdigest()[:40]


def test_inline_recipes_round_trip_in_a_format_2_manifest() -> None:
    chunks = ((b"\x01" * 32, 2), (b"\x02" * 32, 1))
    m = Manifest("m", (FileEntry("e", 0, "b" * 64, ()), FileEntry("w.bin", 3, _SHA, chunks)))
    raw = json.loads(m.to_bytes())
    assert raw["format"] == 2
    assert raw["files"][1]["chunks"] == [["01" * 32, 2], ["02" * 32, 1]] and raw["files"][0]["chunks"] == []
    again = Manifest.from_bytes(m.to_bytes())
    assert again == m and again.commit_id() == m.commit_id()
    recipe = again.files[1].inline_recipe()
    assert recipe is not None and recipe.chunks == chunks and recipe.sha256 == _SHA
    assert FileEntry("x", 3, _SHA).inline_recipe() is None


def _stored(entry: dict[str, object], fmt: int = 2) -> bytes:
    return json.dumps({"format": fmt, "model": "m", "files": [entry]}).encode()


@pytest.mark.parametrize(
    ("entry", "fmt"),
    [
        ({"path": "w", "size": 3, "sha256": _SHA, "chunks": [["01" * 32, 2]]}, 2),  # 2 != 3
        ({"path": "w", "size": 3, "sha256": _SHA, "chunks": [["01" * 31, 3]]}, 2),  # short id
        ({"path": "w", "size": 3, "sha256": _SHA, "chunks": [["zz" * 32, 3]]}, 2),  # not hex
        ({"path": "w", "size": 0, "sha256": _SHA, "chunks": [["01" * 32, 0]]}, 2),  # empty chunk
        ({"path": "w", "size": 3, "sha256": _SHA, "chunks": [["01" * 32, "3"]]}, 2),  # not a number
        ({"path": "w", "size": 3, "sha256": _SHA, "chunks": "0101"}, 2),
        ({"path": "w", "size": 3, "sha256": _SHA, "chunks": [["01" * 32, 3]]}, 1),  # format 1 cannot
        ({"path": "w", "size": 3, "sha256": _SHA}, 2),  # format 2 without an inline recipe
        ({"path": "w", "size": 3, "sha256": _SHA}, 3),
    ],
)
def test_malformed_inline_recipes_are_refused(entry: dict[str, object], fmt: int) -> None:
    with pytest.raises(FormatError):
        Manifest.from_bytes(_stored(entry, fmt))


def test_writers_inline_small_files_of_plain_models_only() -> None:
    small = FileRecipe(_SHA, 3, ((b"\x01" * 32, 3),))
    big = FileRecipe(_SHA, INLINE_MAX_SIZE + 1, ((b"\x01" * 32, INLINE_MAX_SIZE + 1),))
    assert FileEntry.of("w", small, plain=True).chunks == small.chunks
    assert FileEntry.of("w", small, plain=False).chunks is None
    assert FileEntry.of("w", big, plain=True).chunks is None
    with pytest.raises(FormatError):
        Manifest("m", (FileEntry("w", 4, _SHA, small.chunks),))
