"""YAML with line numbers: plain data from a YAML file plus the line of every key and item.

``read_yaml`` composes the YAML node tree (the C loader where available), builds plain data
from it and records the line of every key and list item by its path, e.g.
``("tasks", 3, "depends_on")``; ``Doc.error`` turns a path and a message into a
``TrackError`` naming the file, the line and the field, and ``validate`` does the same for
pydantic's validation errors: it is the one place where a schema error in anything a person
writes (a track file, a template's or an agent's frontmatter, a fake CLI script) becomes
file:line: field: message. It refuses what a track file never
needs: aliases that expand without bound, nesting deeper than ``MAX_DEPTH``, binary values,
keys that are not plain names, duplicate keys. Ids written as numbers or dates (``id: 1.10``)
keep their text.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml

from conductor.errors import ConductorError, TrackError

if TYPE_CHECKING:  # pydantic is loaded by whoever has a model to validate
    from pydantic import BaseModel

    _M = TypeVar("_M", bound=BaseModel)

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
    """A parsed YAML document: plain data plus the line of every key and list item, by path.

    Its errors are ``error_class`` (``TrackError`` for a track file) naming ``display`` (None:
    data that came from no file).
    """

    def __init__(
        self,
        data: Any,
        lines: dict[DocPath, int],
        display: Path | None,
        error_class: type[ConductorError] = TrackError,
    ) -> None:
        self.data = data
        self.lines = lines
        self.display = display
        self.error_class = error_class

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
    ) -> ConductorError:
        """An ``error_class`` error about ``path`` (the line of ``at`` if given)."""
        return self.error_class(
            message,
            path=self.display,
            line=self.line(at if at is not None else path),
            field=fmt_path(path) or None,
        )


def node_lines(node: yaml.Node | None, first_line: int = 1) -> dict[DocPath, int]:
    """The line of every key and list item under a composed YAML ``node``, by path;
    ``first_line`` is the file line the composed text starts on."""
    lines: dict[DocPath, int] = {}
    todo: list[tuple[yaml.Node, DocPath]] = [] if node is None else [(node, ())]
    while todo:
        current, path = todo.pop()
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    child = (*path, str(key.value))
                    lines.setdefault(child, key.start_mark.line + first_line)
                    todo.append((value, child))
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                lines[(*path, i)] = item.start_mark.line + first_line
                todo.append((item, (*path, i)))
    return lines


# --------------------------------------------------------------------------- schema errors


def validate(doc: Doc, model: type[_M], data: Any, prefix: DocPath = ()) -> _M:
    """``model.model_validate(data)``; a validation error becomes ``doc``'s error at the
    first problem's line (``schema_problems``), counting the others in its message."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_of(schema_problems(exc, doc, model, prefix)) from None


def schema_problems(
    exc: Any, doc: Doc, model: type[BaseModel], prefix: DocPath = ()
) -> list[ConductorError]:
    """Each error of pydantic ``ValidationError`` ``exc`` (raised validating ``data`` at
    ``prefix`` in ``doc`` with ``model``) as ``doc``'s error naming its line and field.

    An unknown field is named with a did-you-mean and the allowed fields; a missing one is
    reported at the mapping that lacks it (the field itself when that is the top level).
    """
    problems: list[ConductorError] = []
    for err in exc.errors():
        loc: DocPath = tuple(p for p in err["loc"] if p != "[key]" and not _internal(p))
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            name = str(loc[-1])
            target = _model_at(model, loc[:-1])
            allowed = list(target.model_fields) if target is not None else []
            hint = suggest(name, allowed)
            listed = f"; allowed: {', '.join(allowed)}" if allowed else ""
            problems.append(doc.error((*prefix, *loc), f"unknown field {name!r}{hint}{listed}"))
            continue
        if kind == "missing":
            parent = (*prefix, *loc[:-1])
            message = f"missing required field {loc[-1]!r}"
            problems.append(doc.error(parent or loc, message, at=parent))
            continue
        message = str(err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping of fields, got {describe(value)}"
        elif kind == "list_type":
            message = f"expected a list, got {describe(value)}"
        elif kind != "value_error":
            message = f"{message}, got {describe(value)}"
        problems.append(doc.error((*prefix, *loc), message))
    return problems


def first_of(problems: list[ConductorError]) -> ConductorError:
    """The problem on the earliest line, saying how many more there are (kept in its
    ``others``)."""
    problems.sort(key=lambda e: e.line or 0)
    first = problems[0]
    first.others = tuple(problems[1:])
    if len(problems) > 1:
        more = len(problems) - 1
        first.message += f" (and {more} more problem{'s' if more > 1 else ''})"
        first.args = (first.message,)
    return first


def _internal(part: Any) -> bool:
    """pydantic's pseudo-locations for union members and validators."""
    return isinstance(part, str) and part.startswith(("function-", "tagged-union"))


def _unwrap(annotation: Any) -> Any:
    from pydantic import BaseModel

    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or origin is types.UnionType:
            options = [a for a in get_args(annotation) if a is not type(None)]
            models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
            if models:
                annotation = models[0]
            elif len(options) == 1:
                annotation = options[0]
            else:
                return annotation
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that validates the value at ``loc`` under ``root``."""
    from pydantic import BaseModel

    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) is list and isinstance(part, int):
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def suggest(name: str, choices: Iterable[str] | Mapping[str, Any]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``name``, or nothing."""
    if not isinstance(name, str):
        return ""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def describe(value: Any) -> str:
    """A value as an error message shows what was written: ``null``, ``a list``, ``'x'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return f"the date {value.isoformat()} (quote it to make it text)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
