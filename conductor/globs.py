"""The one reading of ``files`` globs: matching a path, overlap of two globs, shared globs.

A task's ``files``, a track's ``shared_files``, a group's ``shared_resources`` and path locks
are all read here, the same way for the file guard, lock lookups and conflict planning.

The dialect is gitwildmatch, as in git's ``:(glob)`` pathspecs, anchored at the repository
root:

- a pattern is a relative POSIX path; a leading ``./`` (or ``/``), empty segments and ``.``
  segments are dropped; ``.`` (or ``./``, or nothing at all) names the whole repository;
- ``*`` matches any run of characters, ``?`` any one character and ``[...]`` one character of
  a set (``[a-z0-9_]``; ``[!...]`` or ``[^...]`` for the complement), and none of them ever
  matches ``/``. A ``[`` with no ``]`` later in its segment is an ordinary character, and
  ``\\`` makes the character after it ordinary;
- ``**/`` matches zero or more whole directories (``**/*.py`` matches ``setup.py`` and
  ``a/b/setup.py``), a trailing ``/**`` everything below (``src/**``), and ``**`` anywhere
  else acts like ``*`` (``src/**.py`` is ``src/*.py``);
- a pattern that names a directory, with or without a trailing ``/``, also covers everything
  under it: ``src`` and ``src/`` cover ``src/a/b.py``. A glob cannot tell a directory from a
  file, so this holds for every pattern (``src/*.py`` covers ``src/x.py/notes.txt``) but
  one kind: a plain path whose last name has an extension (``setup.py``, ``docs/guide.md``,
  ``.eslintrc.json``) names that file and nothing under it, so that ``**/*.py`` and
  ``README.md`` do not meet in ``README.md/x.py``. ``src/`` and ``src/**`` cover only what
  is under ``src``, not a file named ``src``;
- matching is case sensitive.

``matches`` translates patterns with pathspec's gitwildmatch pattern class (anchored by a
leading ``/``); character sets are translated here, because pathspec lets ``[!x]`` match
``/``. ``overlap`` answers whether two patterns could both match some path, by a search over
pairs of path segments (``**`` spanning any number of them), and inside a segment over pairs
of tokens; it may say True when unsure, never False when a common path exists. ``covers``
answers the other way round: True only when every path one pattern matches, the other
matches too. ``overlapping_pairs`` finds every overlapping pair among many file lists through
an index on literal prefixes and tails, so lists in unrelated directories are never compared;
``first_overlapping_pair`` finds the first such pair comparing equal lists only once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_SLASH = ord("/")
_MAX_CODE = 0x10FFFF

_Ranges = tuple[tuple[int, int], ...]
"""Inclusive code point ranges, sorted, disjoint, never containing ``/``."""

# A token of one path segment: ("=", c) the character c; ("[", ranges) one character in
# ``ranges`` (``?`` is the set of every character but ``/``); ("*",) any run of characters
# without ``/``. A segment is its text when it has no wildcard, else a tuple of tokens;
# ``_DEEP`` stands for a ``**`` segment.
_Token = tuple[Any, ...]
_Segment = str | tuple[_Token, ...]
_STAR: _Token = ("*",)
_DEEP: _Segment = (("**",),)
_NOT_SLASH: _Ranges = ((0, _SLASH - 1), (_SLASH + 1, _MAX_CODE))

_ALWAYS = re.compile("")
_NEVER = re.compile("(?!)")
_SPECIAL = re.compile(r"[*?[\\]")


# --------------------------------------------------------------------------- parsing


def _normal_ranges(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    """Sort and merge ``ranges``, and take ``/`` out of them."""
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out: list[tuple[int, int]] = []
    for lo, hi in merged:
        if lo < _SLASH:
            out.append((lo, min(hi, _SLASH - 1)))
        if hi > _SLASH:
            out.append((max(lo, _SLASH + 1), hi))
    return tuple(out)


def _complement(ranges: _Ranges) -> _Ranges:
    """Every character (but ``/``) outside ``ranges``."""
    out: list[tuple[int, int]] = []
    start = 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CODE:
        out.append((start, _MAX_CODE))
    return _normal_ranges(out)


def _bracket(raw: str, start: int) -> tuple[_Token | None, int]:
    """The set that starts after the ``[`` at ``start - 1``, and where it ends.

    ``(None, start)`` when no ``]`` closes it: the ``[`` is then an ordinary character.
    """
    i, n = start, len(raw)
    negated = i < n and raw[i] in "!^"
    if negated:
        i += 1
    members: list[tuple[str, bool]] = []  # (character, written with a backslash)
    while i < n and (raw[i] != "]" or not members):
        if raw[i] == "\\" and i + 1 < n:
            members.append((raw[i + 1], True))
            i += 2
        else:
            members.append((raw[i], False))
            i += 1
    if i >= n:
        return None, start
    ranges: list[tuple[int, int]] = []
    k = 0
    while k < len(members):
        if k + 2 < len(members) and members[k + 1] == ("-", False):
            lo, hi = ord(members[k][0]), ord(members[k + 2][0])
            if lo <= hi:
                ranges.append((lo, hi))
            k += 3
        else:
            ranges.append((ord(members[k][0]), ord(members[k][0])))
            k += 1
    chars = _normal_ranges(ranges)
    return ("[", _complement(chars) if negated else chars), i + 1


@lru_cache(maxsize=65536)
def _segment(raw: str) -> _Segment:
    """One ``/``-free segment of a pattern (not ``**``): its text, or its tokens."""
    if _SPECIAL.search(raw) is None:
        return raw
    out: list[_Token] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        i += 1
        if ch == "\\":
            if i < n:  # a trailing backslash stands for itself
                ch = raw[i]
                i += 1
            out.append(("=", ch))
        elif ch == "*":
            if not out or out[-1] != _STAR:
                out.append(_STAR)
        elif ch == "?":
            out.append(("[", _NOT_SLASH))
        elif ch == "[":
            token, end = _bracket(raw, i)
            if token is None:
                out.append(("=", "["))
            else:
                out.append(token)
                i = end
        else:
            out.append(("=", ch))
    if all(token[0] == "=" for token in out):
        return "".join(token[1] for token in out)
    return tuple(out)


@lru_cache(maxsize=4096)
def _tokens(segment: _Segment) -> tuple[_Token, ...]:
    """The tokens of a segment, plain text included."""
    if isinstance(segment, str):
        return tuple(("=", ch) for ch in segment)
    return segment


@lru_cache(maxsize=4096)
def _tail(segment: _Segment) -> str:
    """The plain characters after the segment's last wildcard: every match ends with them."""
    if isinstance(segment, str):
        return segment
    out: list[str] = []
    for token in reversed(segment):
        if token[0] != "=":
            break
        out.append(token[1])
    return "".join(reversed(out))


def _head(segment: _Segment) -> str:
    """The plain characters before the segment's first wildcard: every match starts with them."""
    if isinstance(segment, str):
        return segment
    out: list[str] = []
    for token in segment:
        if token[0] != "=":
            break
        out.append(token[1])
    return "".join(out)


@dataclass(frozen=True)
class _Glob:
    """A pattern, read once."""

    segments: tuple[_Segment, ...]
    """Its segments; ``**`` is ``_DEEP`` and is never the last. Empty: the whole repository."""
    directory: bool
    """Written with a trailing ``/`` or ``/**``: it covers what is below, not the name itself."""
    empty: bool
    """It matches no path at all (a character set with no character in it)."""
    key: tuple[str, ...]
    """Its leading segments without wildcards: every path it covers starts with them."""
    exact: bool = False
    """A plain file name with an extension (``setup.py``): it covers nothing under it."""


@lru_cache(maxsize=65536)
def _parse(pattern: str) -> _Glob:
    text = pattern.strip()
    while text.startswith("./"):
        text = text[2:]
    directory = text.endswith("/")
    plain = _SPECIAL.search(text) is None
    segments: list[_Segment] = []
    for raw in text.split("/"):
        if raw in ("", "."):
            continue
        segment = raw if plain else _DEEP if raw == "**" else _segment(raw)
        if segment == _DEEP and segments and segments[-1] == _DEEP:
            continue
        segments.append(segment)
    if segments and segments[-1] == _DEEP:  # ``src/**`` is ``src/``; ``**`` is everything
        segments.pop()
        directory = True
    if not segments:
        directory = False
    empty = "[" in text and any(
        token[0] == "[" and not token[1]
        for segment in segments
        if not isinstance(segment, str)
        for token in segment
    )
    key: list[str] = []
    for segment in segments:
        if not isinstance(segment, str):
            break
        key.append(segment)
    exact = plain and not directory and bool(segments) and _is_file_name(str(segments[-1]))
    return _Glob(tuple(segments), directory, empty, tuple(key), exact)


def _is_file_name(name: str) -> bool:
    """``setup.py``, ``.eslintrc.json``: a name with an extension (a dot after its start)."""
    return "." in name.lstrip(".")


# --------------------------------------------------------------------------- matching


def _set_regex(ranges: _Ranges) -> str:
    body = "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )
    return f"[{body}]"


@lru_cache(maxsize=1)
def _pathspec_translator() -> Any:
    """pathspec's gitwildmatch pattern class, imported on first use (it costs start-up time
    that commands which never match a path should not pay)."""
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

    return GitIgnoreSpecPattern


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    """The compiled form of ``pattern``: pathspec's translation, with our character sets."""
    glob = _parse(pattern)
    if glob.empty:
        return _NEVER
    if not glob.segments:
        return _ALWAYS
    if glob.exact:
        return re.compile(r"\A" + re.escape("/".join(str(s) for s in glob.segments)) + r"\Z")
    # Character sets (and spaces, which pathspec would trim at the end) go to pathspec as a
    # placeholder character that the pattern does not contain, replaced in its regex.
    mark = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in pattern)
    fragments: list[str] = []
    parts: list[str] = []
    for segment in glob.segments:
        if segment == _DEEP:
            parts.append("**")
            continue
        text: list[str] = []
        for token in _tokens(segment):
            if token == _STAR:
                text.append("*")
            elif token[0] == "[" and token[1] == _NOT_SLASH:
                text.append("?")
            elif token[0] == "[" or token[1].isspace():
                fragments.append(_set_regex(token[1]) if token[0] == "[" else re.escape(token[1]))
                text.append(mark)
            elif token[1].isalnum() or token[1] in "._-":
                text.append(token[1])
            else:
                text.append("\\" + token[1])
        parts.append("".join(text))
    anchored = "/" + "/".join(parts) + ("/" if glob.directory else "")
    translated, include = _pathspec_translator().pattern_to_regex(anchored)
    if translated is None or not include:  # not reached: a rendered pattern is never void
        return _NEVER
    pieces = translated.split(mark)
    if len(pieces) != len(fragments) + 1:  # not reached: pathspec keeps the placeholders
        raise AssertionError(f"cannot translate glob {pattern!r}")
    out = [pieces[0]]
    for fragment, piece in zip(fragments, pieces[1:], strict=True):
        out += [fragment, piece]
    return re.compile("".join(out), re.DOTALL)


def matches(path: str, globs: Iterable[str]) -> bool:
    """Whether repository path ``path`` (relative, POSIX, normalised) matches any of ``globs``.

    See the module docstring for the dialect: ``src/*.py`` matches ``src/a.py`` but not
    ``src/a/b.py``; ``**/*.py`` matches ``setup.py``; ``src`` covers ``src/a/b.py``.
    """
    return any(_regex(glob).search(path) is not None for glob in globs)


# --------------------------------------------------------------------------- overlap


@lru_cache(maxsize=4096)
def _chars(token: _Token) -> _Ranges:
    """The characters a single-character token matches."""
    if token[0] == "=":
        code = ord(token[1])
        return () if code == _SLASH else ((code, code),)
    ranges: _Ranges = token[1]
    return ranges


def _chars_meet(a: _Token, b: _Token) -> bool:
    """Whether one character matches both single-character tokens."""
    if a[0] == "=" and b[0] == "=":
        return bool(a[1] == b[1])
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in _chars(a) for lo2, hi2 in _chars(b))


def _chars_within(inner: _Token, outer: _Token) -> bool:
    """Whether every character ``inner`` matches, ``outer`` matches too."""
    wide = _chars(outer)
    return all(any(lo2 <= lo1 and hi1 <= hi2 for lo2, hi2 in wide) for lo1, hi1 in _chars(inner))


@lru_cache(maxsize=65536)
def _segments_meet(a: _Segment, b: _Segment) -> bool:
    """Whether some ``/``-free string matches both segments (a search over token pairs)."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    head_a, head_b, tail_a, tail_b = _head(a), _head(b), _tail(a), _tail(b)
    if not (head_a.startswith(head_b) or head_b.startswith(head_a)):
        return False
    if not (tail_a.endswith(tail_b) or tail_b.endswith(tail_a)):
        return False
    a, b = _tokens(a), _tokens(b)
    n, m = len(a), len(b)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j = state
        if i == n and j == m:
            return True
        ta = a[i] if i < n else None
        tb = b[j] if j < m else None
        if ta == _STAR:
            stack.append((i + 1, j))
            if tb is not None and tb != _STAR:
                stack.append((i, j + 1))
        if tb == _STAR:
            stack.append((i, j + 1))
            if ta is not None and ta != _STAR:
                stack.append((i + 1, j))
        if ta is not None and tb is not None and _STAR not in (ta, tb) and _chars_meet(ta, tb):
            stack.append((i + 1, j + 1))
    return False


def _globs_meet(a: _Glob, b: _Glob) -> bool:
    """Whether some path matches both (a search over pairs of segment positions).

    Once either pattern has run out of segments, the path can go on below what it matched
    (a pattern covers everything under what it names), so the other's rest always fits.
    """
    if a.empty or b.empty:
        return False
    common = min(len(a.key), len(b.key))
    if a.key[:common] != b.key[:common]:
        return False
    n, m = len(a.segments), len(b.segments)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j = state
        if i == n and j == m:
            return True
        if i == n or j == m:
            # A pattern that ran out covers what is under it, unless it names a file.
            if (i == n and not a.exact) or (j == m and not b.exact):
                return True
            continue
        sa, sb = a.segments[i], b.segments[j]
        if sa == _DEEP:
            stack += [(i + 1, j), (i, j + 1)]
        if sb == _DEEP:
            stack += [(i, j + 1), (i + 1, j)]
        if _DEEP not in (sa, sb) and _segments_meet(sa, sb):
            stack.append((i + 1, j + 1))
    return False


@lru_cache(maxsize=65536)
def _overlap(p: str, q: str) -> bool:
    return _globs_meet(_parse(p), _parse(q))


def overlap(p: str, q: str) -> bool:
    """Whether some path could match both patterns (conservatively, and symmetrically).

    True whenever a common path exists, counting what is under a directory: ``src`` and
    ``src/*.py`` overlap, ``src/*.py`` and ``src/a/b.py`` do not, ``**/*.py`` and ``setup.py``
    do. Since a name without an extension may be a directory, a pattern that starts with
    ``**/`` overlaps such names (``**/*.py`` and ``Makefile`` meet in ``Makefile/x.py``), but
    not file names (``README.md``).
    """
    return _overlap(p, q) if p <= q else _overlap(q, p)


# --------------------------------------------------------------------------- coverage


@lru_cache(maxsize=65536)
def _segment_covers(outer: _Segment, inner: _Segment) -> bool:
    """Whether every string ``inner`` matches, ``outer`` matches (True only when sure)."""
    if isinstance(outer, str) and isinstance(inner, str):
        return outer == inner
    outer, inner = _tokens(outer), _tokens(inner)
    n, m = len(outer), len(inner)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j = state
        if i == n and j == m:
            return True
        if i < n and outer[i] == _STAR:
            stack.append((i + 1, j))
            if j < m:
                stack.append((i, j + 1))  # the star takes whatever ``inner`` has here
        elif i < n and j < m and inner[j] != _STAR and _chars_within(inner[j], outer[i]):
            stack.append((i + 1, j + 1))
    return False


@lru_cache(maxsize=65536)
def covers(outer: str, inner: str) -> bool:
    """Whether every path ``inner`` matches, ``outer`` matches too.

    True only when sure (it may say False when unsure): ``src/`` covers ``src/*.py``,
    ``**/*.json`` covers ``src/*.json``, ``*.json`` covers ``x.json`` but not ``src/x.json``.
    """
    o, i = _parse(outer), _parse(inner)
    if i.empty:
        return True
    if o.empty:
        return False
    a, b = o.segments, i.segments
    n, m = len(a), len(b)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        x, y = state
        if x == n:  # ``outer`` covers what it matched and everything under it
            if o.exact:  # ... but a file name covers only itself
                if y == m and i.exact:
                    return True
                continue
            if y < m or not o.directory or i.directory:
                return True
            continue
        if y == m:  # below ``inner`` anything goes, but ``outer`` still wants segments
            continue
        if a[x] == _DEEP:
            stack += [(x + 1, y), (x, y + 1)]
        elif b[y] != _DEEP and _segment_covers(a[x], b[y]):
            stack.append((x + 1, y + 1))
    return False


def is_shared(pattern: str, shared: Sequence[str]) -> bool:
    """Whether ``pattern`` lies inside one of the ``shared`` globs (True only when sure)."""
    return any(covers(glob, pattern) for glob in shared)


def _label(p: str, q: str) -> list[str]:
    """What to show for an overlap of ``p`` and ``q``: the narrower one, or both."""
    if p == q or covers(q, p):
        return [p]
    if covers(p, q):
        return [q]
    return [p, q]


def files_overlap(a: Sequence[str], b: Sequence[str], shared: Sequence[str] = ()) -> list[str]:
    """The patterns through which two ``files`` lists overlap; empty when they do not.

    Patterns inside a ``shared`` glob are left out on both sides.
    """
    left = [p for p in a if not is_shared(p, shared)]
    right = [q for q in b if not is_shared(q, shared)]
    found: dict[str, None] = {}
    for p in left:
        for q in right:
            if overlap(p, q):
                found.update(dict.fromkeys(_label(p, q)))
    return list(found)


# --------------------------------------------------------------------------- many lists


def _suffixes(text: str) -> list[str]:
    return [text[i:] for i in range(len(text) + 1)]


@dataclass
class _Entry:
    """One pattern of one item, filed under its key."""

    item: int
    pattern: str
    glob: _Glob
    first: _Segment | None
    """Its first segment with a wildcard (or ``**``); None when it has none."""
    deep: bool
    """It has a ``**`` segment, so its depth is not fixed."""


@dataclass
class _Bucket:
    """The patterns that share one key (leading literal segments)."""

    entries: list[_Entry] = field(default_factory=list)
    direct: list[_Entry] = field(default_factory=list)
    """Literal patterns and those whose first wildcard segment is ``**``: they meet every
    pattern filed here or under a longer key."""
    first: dict[str, list[_Entry]] = field(default_factory=dict)
    """Tail of the first wildcard segment -> the other patterns."""
    first_suffix: dict[str, list[_Entry]] = field(default_factory=dict)
    """Every suffix of that tail -> the other patterns."""
    deep: dict[str, list[_Entry]] = field(default_factory=dict)
    """Like ``first``, for the patterns with a ``**`` segment only."""
    deep_suffix: dict[str, list[_Entry]] = field(default_factory=dict)
    """Like ``first_suffix``, for the patterns with a ``**`` segment only."""
    last: dict[tuple[int, str], list[_Entry]] = field(default_factory=dict)
    """(position, tail) of the last segment -> the patterns without ``**``."""
    last_suffix: dict[tuple[int, str], list[_Entry]] = field(default_factory=dict)
    """(position, every suffix of that tail) -> the patterns without ``**``."""

    def add(self, entry: _Entry) -> None:
        self.entries.append(entry)
        if entry.first is None or entry.first == _DEEP:
            self.direct.append(entry)
            return
        tail = _tail(entry.first)
        self.first.setdefault(tail, []).append(entry)
        for suffix in _suffixes(tail):
            self.first_suffix.setdefault(suffix, []).append(entry)
        if entry.deep:
            self.deep.setdefault(tail, []).append(entry)
            for suffix in _suffixes(tail):
                self.deep_suffix.setdefault(suffix, []).append(entry)
            return
        position = len(entry.glob.segments) - 1
        tail = _tail(entry.glob.segments[position])
        self.last.setdefault((position, tail), []).append(entry)
        for suffix in _suffixes(tail):
            self.last_suffix.setdefault((position, suffix), []).append(entry)


def _candidates(entry: _Entry, buckets: dict[tuple[str, ...], _Bucket]) -> Iterator[_Entry]:
    """Entries that might overlap ``entry``; every overlapping pair comes up at least once.

    Two patterns meet only if one's key starts the other's; a pattern filed under a shorter
    key meets only if its first wildcard segment can match the other's literal segment there,
    so it must end with that segment's tail. Under the same key, two patterns without ``**``
    meet only if the shorter one's last segment meets the other's segment at that position,
    and patterns with ``**`` only if their first wildcard segments meet: tails decide both.
    """
    key = entry.glob.key
    for depth in range(len(key) + 1):
        bucket = buckets.get(key[:depth])
        if bucket is None:
            continue
        yield from bucket.direct
        if depth < len(key):
            for suffix in _suffixes(key[depth]):
                yield from bucket.first.get(suffix, ())
            continue
        if entry.first is None or entry.first == _DEEP:
            yield from bucket.entries
            continue
        tail = _tail(entry.first)
        if entry.deep:
            yield from bucket.first_suffix.get(tail, ())
            for suffix in _suffixes(tail)[1:]:
                yield from bucket.first.get(suffix, ())
            continue
        yield from bucket.deep_suffix.get(tail, ())
        for suffix in _suffixes(tail)[1:]:
            yield from bucket.deep.get(suffix, ())
        segments = entry.glob.segments
        for position in range(depth, len(segments)):
            tail = _tail(segments[position])
            yield from bucket.last_suffix.get((position, tail), ())
            for suffix in _suffixes(tail)[1:]:
                yield from bucket.last.get((position, suffix), ())


def overlapping_pairs(
    items: Sequence[tuple[str, Sequence[str]]], shared: Sequence[str] = ()
) -> Iterator[tuple[str, str, list[str]]]:
    """Pairs ``(a, b, patterns)`` of items whose file lists overlap, in item order.

    The same pairs as ``files_overlap`` on every pair of items, but patterns are indexed by
    literal prefix and tails, so items in unrelated directories (and items without files)
    are never compared.
    """
    for i, j, labels in overlapping_index_pairs([files for _, files in items], shared):
        yield items[i][0], items[j][0], labels


def first_overlapping_pair(
    items: Sequence[tuple[str, Sequence[str]]], shared: Sequence[str] = ()
) -> tuple[str, str, list[str]] | None:
    """The first pair ``overlapping_pairs`` would give (in item order), or None.

    Items with the same set of files are compared once, as one class: hundreds of items
    sharing a glob cost one comparison, not one per pair.
    """
    classes: dict[frozenset[str], list[int]] = {}
    for index, (_, files) in enumerate(items):
        if files:
            classes.setdefault(frozenset(files), []).append(index)
    members = list(classes.values())
    best: tuple[int, int, list[str]] | None = None
    for group in members:  # two items of one class overlap unless their files are shared
        if len(group) > 1:
            files = items[group[0]][1]
            overlap = files_overlap(files, files, shared)
            if overlap and (best is None or (group[0], group[1]) < best[:2]):
                best = (group[0], group[1], overlap)
    lists = [items[group[0]][1] for group in members]
    for i, j, overlap in overlapping_index_pairs(lists, shared):
        a, b = sorted((members[i][0], members[j][0]))
        if best is None or (a, b) < best[:2]:
            best = (a, b, overlap)
    if best is None:
        return None
    a, b, overlap = best
    return items[a][0], items[b][0], overlap


def overlapping_index_pairs(
    lists: Sequence[Sequence[str]], shared: Sequence[str] = ()
) -> Iterator[tuple[int, int, list[str]]]:
    """``overlapping_pairs`` by position: ``(i, j, patterns)`` with ``i < j``, in order."""
    entries: list[_Entry] = []
    buckets: dict[tuple[str, ...], _Bucket] = {}
    for index, files in enumerate(lists):
        for pattern in dict.fromkeys(files):
            glob = _parse(pattern)
            if glob.empty or (shared and is_shared(pattern, shared)):
                continue
            segments = glob.segments
            wild = segments[len(glob.key)] if len(glob.key) < len(segments) else None
            entry = _Entry(index, pattern, glob, wild, _DEEP in segments)
            entries.append(entry)
            buckets.setdefault(glob.key, _Bucket()).add(entry)
    found: dict[tuple[int, int], dict[str, None]] = {}
    for entry in entries:
        for other in _candidates(entry, buckets):
            if other.item == entry.item:
                continue
            first, second = (entry, other) if entry.item < other.item else (other, entry)
            if overlap(first.pattern, second.pattern):
                labels = _label(first.pattern, second.pattern)
                found.setdefault((first.item, second.item), {}).update(dict.fromkeys(labels))
    for i, j in sorted(found):
        yield i, j, list(found[(i, j)])
