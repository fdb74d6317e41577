"""Globs: one gitwildmatch reading for matching, overlap, sharing and the conflict index."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conductor.executors.evidence import FileGuard, matches_globs
from conductor.globs import (
    _regex,
    covers,
    files_overlap,
    first_overlapping_pair,
    is_shared,
    matches,
    overlap,
    overlapping_pairs,
)
from conductor.plan import conflicting_pairs
from conductor.track import parse_track

# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("path", "glob", "expected"),
    [
        ("setup.py", "**/*.py", True),
        ("a/b/setup.py", "**/*.py", True),
        ("setup.pyc", "**/*.py", False),
        ("src/a.py", "src/*.py", True),
        ("src/a/b.py", "src/*.py", False),
        ("src/a.py/notes.txt", "src/*.py", True),
        ("README.md", "README.md", True),
        ("README.md/x.py", "README.md", False),
        ("docs/README.md", "README.md", False),
        ("src/a/b.py", "src", True),
        ("src", "src", True),
        ("srcx/a.py", "src", False),
        ("docs/x.md", "docs/", True),
        ("docs", "docs/", False),
        ("src/a/b.py", "src/**", True),
        ("src", "src/**", False),
        ("a/b", "a/**/b", True),
        ("a/x/y/b", "a/**/b", True),
        ("a/xb", "a/**/b", False),
        ("src/a.py", "src/**.py", True),
        ("src/a/b.py", "src/**.py", False),
        ("a1.txt", "a?.txt", True),
        ("a12.txt", "a?.txt", False),
        ("a/.txt", "a?.txt", False),
        ("a1.txt", "a[0-9].txt", True),
        ("ab.txt", "a[0-9].txt", False),
        ("ab.txt", "a[!0-9].txt", True),
        ("a1.txt", "a[!0-9].txt", False),
        ("a/c", "a[!b]c", False),
        ("a/c", "a[^b]c", False),
        ("a]c", "a[]]c", True),
        ("a-c", "a[x-]c", True),
        ("a[", "a[", True),
        ("ab", "a[", False),
        ("a*b", "a\\*b", True),
        ("axb", "a\\*b", False),
        ("a.py", "./a.py", True),
        ("a/b.py", "a//b.py", True),
        ("anything/at/all", ".", True),
        ("x.json", "*.json", True),
        ("src/x.json", "*.json", False),
        ("Src/a.py", "src/*.py", False),
        ("my file.txt", "my file.txt", True),
    ],
)
def test_matches(path: str, glob: str, expected: bool) -> None:
    """gitwildmatch, anchored at the root: ``*``/``?``/``[]`` never cross ``/``; dirs cover."""
    assert matches(path, [glob]) is expected
    assert matches_globs(path, [glob]) is expected


def test_matches_any_of_several_and_none_of_none() -> None:
    """A path matches a list when it matches one of its globs; an empty list matches nothing."""
    assert matches("docs/a.md", ["src/*.py", "docs/"])
    assert not matches("docs/a.md", [])


def test_matching_many_paths_compiles_each_glob_once() -> None:
    """Compiled globs are cached: 100,000 checks against three globs compile each glob once."""
    globs = ("src/**/*.py", "docs/", "[Mm]akefile")
    paths = [f"src/pkg{i % 50}/mod{i}.py" if i % 2 else f"lib/x{i}.c" for i in range(100_000)]
    _regex.cache_clear()
    hits = sum(matches(path, globs) for path in paths)
    assert hits == 50_000
    assert _regex.cache_info().misses == len(globs)


# --------------------------------------------------------------------------- overlap


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        ("**/*.py", "setup.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/*.py", "src/a.py", True),
        ("src", "src/a/b.py", True),
        ("src/", "src/*.py", True),
        ("docs/", "docs/x.md", True),
        ("docs", "*.md", False),
        ("src/*.py", "src/*.md", False),
        ("src/*.py", "src/a*", True),
        ("src/**/*.ts", "src/ui/*.ts", True),
        ("src/**/*.ts", "lib/ui/*.ts", False),
        ("lib/*/x1.py", "lib/*/x2.py", False),
        ("lib/*/x1.py", "lib/*", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b/*.py", "a/c/*.md", True),
        ("a/**/b", "c/**/b", False),
        ("sr?", "src/x.py", True),
        ("a/[bc].py", "a/[de].py", False),
        ("a/[bc].py", "a/[c-z].py", True),
        ("a/[!b].py", "a/b.py", False),
        ("a/[!b].py", "a/[!c].py", True),
        ("a?c", "a/c", False),
        ("a[!b]c", "a/c", False),
        ("**/x.py", "README.md", False),
        ("**/x.py", "Makefile", True),
        ("README.md", "README.md/x", False),
        ("docs/guide.md", "docs", True),
        (".", "anything/at/all", True),
        ("a[", "a[", True),
        ("a[", "ab", False),
        ("a[z-a]", "a[z-a]", False),
    ],
)
def test_overlap(p: str, q: str, expected: bool) -> None:
    """Two globs overlap when some path (or something under it) matches both; symmetric."""
    assert overlap(p, q) is expected
    assert overlap(q, p) is expected


def _track(p: str, q: str) -> str:
    return textwrap.dedent(
        f"""\
        track: t
        tasks:
          - {{id: a, files: ["{p}"]}}
          - {{id: b, files: ["{q}"]}}
        """
    )


@pytest.mark.parametrize(
    ("glob", "path", "expected"),
    [
        ("**/*.py", "setup.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/*.py", "src/a.py", True),
        ("docs", "docs/x/y.md", True),
        ("*.md", "docs/x.md", False),
    ],
)
def test_every_consumer_reads_a_glob_the_same_way(
    tmp_path: Path, glob: str, path: str, expected: bool
) -> None:
    """Planner, evidence matcher, file guard and overlap all give one answer per glob and path."""
    track = parse_track(_track(glob, path), guard=False)
    assert (conflicting_pairs(track)["a"] == {"b"}) is expected
    assert matches_globs(path, [glob]) is expected
    _rel, reason = FileGuard(repo=tmp_path, globs=(glob,), worker="a.1").check(path)
    assert (reason is None) is expected
    assert overlap(glob, path) is expected


# --------------------------------------------------------------------------- sharing


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("*.json", "x.json", True),
        ("*.json", "src/x.json", False),
        ("**/*.json", "src/*.json", True),
        ("src/", "src/*.py", True),
        ("src/", "src", False),
        ("src", "src/", True),
        ("src/**", "src/a/b", True),
        ("src/*", "src/a*", True),
        ("src/a*", "src/*", False),
        ("src/?", "src/[ab]", True),
        ("src/[ab]", "src/?", False),
        ("src/*.py", "src/**/*.py", False),
        ("**", "anything/**", True),
    ],
)
def test_covers(outer: str, inner: str, expected: bool) -> None:
    """covers is True only when every path the inner glob matches, the outer matches too."""
    assert covers(outer, inner) is expected


def test_shared_globs_are_read_in_the_same_dialect() -> None:
    """A shared ``*.json`` covers root files only; ``**/*.json`` covers them everywhere."""
    assert is_shared("x.json", ["*.json"])
    assert not is_shared("src/x.json", ["*.json"])
    assert is_shared("src/x.json", ["**/*.json"])
    assert files_overlap(["src/x.json"], ["src/x.json"], ["*.json"]) == ["src/x.json"]
    assert files_overlap(["src/x.json"], ["src/x.json"], ["**/*.json"]) == []


# --------------------------------------------------------------------------- properties

_PIECES = st.sampled_from(["a", "b", "/", "*", "?", ".", "[ab]", "[!a]", "**"])
_PATTERNS = st.lists(_PIECES, min_size=1, max_size=6).map("".join)
_SEGMENTS = st.text(alphabet="ab.*[", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
_PATHS = st.lists(_SEGMENTS, min_size=1, max_size=4).map("/".join)


def _escaped(path: str) -> str:
    """``path`` as a glob that matches it literally."""
    return re.sub(r"([*?[\\])", r"\\\1", path)


@settings(max_examples=600, deadline=None)
@given(_PATTERNS, _PATTERNS, _PATHS)
def test_overlap_is_sound(p: str, q: str, path: str) -> None:
    """A path both globs match means they overlap; a glob that matches anything meets itself."""
    if matches(path, [p]):
        assert overlap(p, p)
        if matches(path, [q]):
            assert overlap(p, q) and overlap(q, p)


@settings(max_examples=600, deadline=None)
@given(_PATTERNS, _PATTERNS, _PATHS)
def test_covers_is_sound(outer: str, inner: str, path: str) -> None:
    """When one glob covers another, every path the inner one matches, the outer matches."""
    if covers(outer, inner) and matches(path, [inner]):
        assert matches(path, [outer])


@settings(max_examples=300, deadline=None)
@given(_PATTERNS, _PATHS)
def test_a_glob_meets_every_path_it_matches(glob: str, path: str) -> None:
    """The planner never misses a glob matching a literal path (nor the path under it)."""
    literal = _escaped(path)
    assert matches(path, [literal])
    if matches(path, [glob]):
        assert overlap(glob, literal) and overlap(glob, literal + "/x")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_PATTERNS, max_size=3), max_size=10))
def test_index_finds_exactly_the_overlapping_pairs(files: list[list[str]]) -> None:
    """overlapping_pairs finds the same pairs as comparing every pair of lists."""
    items = [(f"t{i}", fs) for i, fs in enumerate(files)]
    fast = {(a, b) for a, b, _ in overlapping_pairs(items)}
    slow = {
        (items[i][0], items[j][0])
        for i in range(len(items))
        for j in range(i + 1, len(items))
        if files_overlap(items[i][1], items[j][1])
    }
    assert fast == slow


_FEW = st.sampled_from(["src/**", "src/*.py", "src/a.py", "docs/", "*.json", "x.json"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(_FEW, max_size=2), max_size=12),
    st.lists(_FEW, max_size=1),
)
def test_first_overlapping_pair_is_the_first_of_all_pairs(
    files: list[list[str]], shared: list[str]
) -> None:
    """first_overlapping_pair, comparing equal file lists once, names the pair (and the
    patterns) overlapping_pairs lists first."""
    items = [(f"t{i}", fs) for i, fs in enumerate(files)]
    first = next(overlapping_pairs(items, shared), None)
    found = first_overlapping_pair(items, shared)
    if first is None:
        assert found is None
    else:
        assert found is not None and found[:2] == first[:2]
        assert set(found[2]) == set(first[2])


def test_first_overlapping_pair_of_many_equal_lists() -> None:
    """Thousands of items with the same glob: the first two are named, and shared globs
    relieve them all."""
    items = [(f"t{i}", ["src/**"]) for i in range(5000)] + [("doc", ["docs/x.md"])]
    assert first_overlapping_pair(items) == ("t0", "t1", ["src/**"])
    assert first_overlapping_pair(items, ["src/"]) is None
