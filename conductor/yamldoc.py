"""YAML with line numbers: plain data from a YAML file plus the line of every key and item.

``read_yaml`` composes the YAML node tree (the C loader where available), builds plain data
from it and records the line of every key and list item by its path, e.g.
``("tasks", 3, "depends_on")``; ``Doc.error`` turns a path and a message into a
``TrackError`` naming the file, the line and the field. It refuses what a track file never
needs: aliases that expand without bound, nesting deeper than ``MAX_DEPTH``, binary values,
keys that are not plain names, duplicate keys. Ids written as numbers or dates (``id: 1.10``)
keep their text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from conductor.errors import TrackError

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists a track file may use."""
MAX_ALIAS_NODES = 100_000
"""Most YAML nodes that aliases (``*name``) may expand to: refuses 'billion laughs' files."""

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"

DocPath = tuple[str | int, ...]
"""Where a value sits in the document: ``("tasks", 3, "depends_on", 0)``."""


class Doc:
    """A parsed track file: plain data plus the line of every key and list item, by path."""

    def __init__(self, data: Any, lines: dict[DocPath, int], display: Path) -> None:
        self.data = data
        self.lines = lines
        self.display = display

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest recorded ancestor."""
        key = tuple(path)
        while key:
            line = self.lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return self.lines.get((), 1)

    def error(
        self, path: Sequence[str | int], message: str, *, at: Sequence[str | int] | None = None
    ) -> TrackError:
        """A ``TrackError`` about ``path`` (the line of ``at`` if given)."""
        return TrackError(
            message,
            path=self.display,
            line=self.line(at if at is not None else path),
            field=fmt_path(path) or None,
        )


def fmt_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _wants_text(path: DocPath) -> bool:
    """Ids and names written as numbers (``id: 1.1``) keep their text, not a float."""
    if not path:
        return False
    last = path[-1]
    if last in ("id", "name", "track", "description", "depends_on"):
        return True
    return isinstance(last, int) and len(path) >= 2 and path[-2] in ("depends_on", "tasks")


class _Builder:
    """Turns composed YAML nodes into plain data, recording lines and refusing abuse."""

    def __init__(self, loader: Any, display: Path) -> None:
        self.loader = loader
        self.display = display
        self.lines: dict[DocPath, int] = {}
        self.seen: set[int] = set()
        self.alias_nodes = 0
        self.merged: dict[int, int] = {}

    def fail(self, node: yaml.Node, message: str, path: DocPath) -> TrackError:
        return TrackError(
            message, path=self.display, line=node.start_mark.line + 1, field=fmt_path(path) or None
        )

    def build(self, node: yaml.Node, path: DocPath = (), depth: int = 0) -> Any:
        if id(node) in self.seen:
            self.alias_nodes += 1
            if self.alias_nodes > MAX_ALIAS_NODES:
                raise self.fail(node, f"aliases expand to more than {MAX_ALIAS_NODES} nodes", path)
        else:
            self.seen.add(id(node))
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep", path)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            items = []
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, i), depth + 1))
            return items
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return node.value
        value = self.construct(node, path)
        if isinstance(value, bytes | bytearray):
            raise self.fail(node, "binary values (!!binary) are not supported here", path)
        if (
            isinstance(node, yaml.ScalarNode)
            and isinstance(value, int | float | date)
            and not isinstance(value, bool)
            and _wants_text(path)
        ):
            return node.value  # `id: 1.10` means the text 1.10, `track: 2024-01-01` the text
        return value

    def construct(self, node: yaml.Node, path: DocPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except RecursionError:
            raise
        except Exception as exc:
            value = node.value if isinstance(node, yaml.ScalarNode) else type(node).__name__
            raise self.fail(
                node, f"cannot read {value!r} as {node.tag.rsplit(':', 1)[-1]} ({exc})", path
            ) from None

    def mapping(self, node: yaml.MappingNode, path: DocPath, depth: int) -> dict[str, Any]:
        merged = self.merged.get(id(node))
        if merged is None:  # first visit: expand `<<` merge keys in place, remember how many
            own = sum(1 for key, _ in node.value if key.tag != _MERGE_TAG)
            self.loader.flatten_mapping(node)
            merged = self.merged[id(node)] = len(node.value) - own
        result: dict[str, Any] = {}
        own_lines: dict[str, int] = {}
        for i, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be a plain name, not a list or mapping", path)
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if i >= merged:
                if key in own_lines:
                    what = "agent" if path == ("agents",) else "key"
                    raise self.fail(
                        key_node,
                        f"duplicate {what} {key!r} (first at line {own_lines[key]})",
                        (*path, key),
                    )
                own_lines[key] = line
            self.lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str, display: Path, *, empty: str = "the file is empty") -> Doc:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise TrackError(empty, path=display)
        builder = _Builder(loader, display)
        data = builder.build(node)
        return Doc(data, builder.lines, display)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise TrackError(f"invalid YAML: {what or exc}", path=display, line=line) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        raise TrackError(f"invalid YAML: {exc}", path=display, line=line) from None
    except RecursionError:
        raise TrackError("invalid YAML: nested too deeply", path=display) from None
    finally:
        loader.dispose()
