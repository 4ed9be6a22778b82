"""YAML from users, bounded: the one loader crmbridge reads configuration and mapping files with.

``yaml.safe_load`` refuses arbitrary Python objects, but not a document built to exhaust the machine: a 342-byte
"billion laughs" of nested aliases expands to hundreds of millions of nodes (3.7 GB and 40 s in ``mapping
validate``), a deeply nested ``[[[[...`` exhausts the interpreter's stack (``RecursionError``), and a recursive alias
(``&a [*a]``) never ends when walked. :class:`BoundedLoader` refuses each of them while the node tree is composed,
before anything is constructed or walked, with :class:`YamlLimitError` (a ``yaml.MarkedYAMLError``: it carries
the line and column of the offending node):

* a document larger than :data:`DEFAULT_MAX_BYTES` (1 MiB; ``$CRMBRIDGE_YAML_MAX_BYTES`` changes it);
* nesting deeper than :data:`MAX_DEPTH` levels of mappings and lists;
* more than :data:`MAX_ALIASES` aliases, or aliases that together stand for more than :data:`MAX_ALIAS_NODES`
  nodes (what a reader of the expanded document would walk);
* an alias to a node that contains it (a recursive structure).

Legitimate files are nowhere near these limits: crmbridge's largest shipped mapping is ~25 KB, 8 levels deep, with
no aliases; a configuration sharing settings through ``<<: *defaults`` uses a few dozen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = ["DEFAULT_MAX_BYTES", "MAX_ALIASES", "MAX_ALIAS_NODES", "MAX_DEPTH", "BoundedLoader", "YamlDocument",
           "YamlLimitError", "YamlProblem", "load_with_lines", "max_bytes", "read_bounded", "size_problem"]

#: the default largest configuration or mapping file (bytes)
DEFAULT_MAX_BYTES = 1 << 20
#: the environment variable that changes it (an integer number of bytes)
MAX_BYTES_ENV = "CRMBRIDGE_YAML_MAX_BYTES"
#: deepest nesting of mappings and lists
MAX_DEPTH = 64
#: most aliases (``*name``) in one document
MAX_ALIASES = 100
#: most nodes all aliases of a document may stand for, expanded
MAX_ALIAS_NODES = 10_000


class YamlLimitError(yaml.MarkedYAMLError):
    """A document refused for its size, depth or aliases (``problem`` says which, ``problem_mark`` where)."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def max_bytes() -> int:
    """The configured largest YAML document, in bytes (``$CRMBRIDGE_YAML_MAX_BYTES``, else 1 MiB)."""
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_MAX_BYTES


def read_bounded(path: Path, limit: int | None = None) -> bytes:
    """Read at most ``limit`` + 1 bytes of ``path`` (a huge or endless file is not read whole); the caller refuses
    a result longer than ``limit`` with :func:`size_problem`. Raises OSError like ``Path.read_bytes``."""
    limit = max_bytes() if limit is None else limit
    with path.open("rb") as fh:
        return fh.read(limit + 1)


def size_problem(size: int, limit: int | None = None) -> str | None:
    """The refusal for a document of ``size`` bytes, or None when it is within the limit."""
    limit = max_bytes() if limit is None else limit
    if size > limit:
        return (f"the file is larger than {limit} bytes (refused; set ${MAX_BYTES_ENV} to allow larger YAML "
                "documents)")
    return None


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses deep nesting, alias bombs and recursive aliases (see the module)."""

    max_depth = MAX_DEPTH
    max_aliases = MAX_ALIASES
    max_alias_nodes = MAX_ALIAS_NODES

    def __init__(self, stream: Any) -> None:
        if isinstance(stream, bytes | str) and (problem := size_problem(len(stream))):
            raise YamlLimitError(problem)
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}        # id(node) -> nodes it stands for, expanded
        self._open: set[int] = set()            # nodes being composed (an alias to one is recursive)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                if id(node) in self._open:
                    raise YamlLimitError(f"alias *{event.anchor} refers to a node that contains it (a recursive "
                                         "structure is refused)", event.start_mark)
                self._aliases += 1
                if self._aliases > self.max_aliases:
                    raise YamlLimitError(f"more than {self.max_aliases} aliases (refused: a document that "
                                         "multiplies itself through aliases)", event.start_mark)
                self._alias_nodes += self._sizes.get(id(node), 1)
                if self._alias_nodes > self.max_alias_nodes:
                    raise YamlLimitError(f"aliases expand to more than {self.max_alias_nodes} nodes (refused: "
                                         "an alias bomb)", event.start_mark)
            return super().compose_node(parent, index)
        start = self.peek_event()
        self._depth += 1
        if self._depth > self.max_depth:
            raise YamlLimitError(f"nesting deeper than {self.max_depth} levels (refused)", start.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # PyYAML lets a constructor's own ValueError out (a timestamp 2026-13-45, a huge exponent): locate it
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, TypeError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({exc})",
                                                    node.start_mark) from None

    def compose_document(self) -> Any:
        self.anchors = _OpenAnchors(self)
        return super().compose_document()

    def compose_sequence_node(self, anchor: Any) -> Any:
        return self._sized(super().compose_sequence_node(anchor))

    def compose_mapping_node(self, anchor: Any) -> Any:
        return self._sized(super().compose_mapping_node(anchor))

    def _sized(self, node: Any) -> Any:
        self._open.discard(id(node))
        children = (node.value if isinstance(node, yaml.SequenceNode)
                    else [n for pair in node.value for n in pair])
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        return node


class _OpenAnchors(dict[Any, Any]):
    """The composer's anchor table: PyYAML registers a collection under its anchor before composing its children,
    so a collection is "open" (an alias to it is recursive) from then until :meth:`BoundedLoader._sized`."""

    def __init__(self, loader: BoundedLoader) -> None:
        super().__init__()
        self._loader = loader

    def __setitem__(self, key: Any, node: Any) -> None:
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            self._loader._open.add(id(node))
        super().__setitem__(key, node)


# ==============================================================================================================
# YAML with line numbers: the one loader of configuration and mapping files

Key = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlProblem:
    """Something wrong with a document, for the caller to phrase.

    Attributes:
        kind: ``refused`` (a limit above), ``syntax`` (located YAML error), ``error`` (unlocated YAML error) or
            ``key`` (a duplicate or non-scalar key; the document is still returned).
        message: the problem (for ``syntax`` the parser's problem, with ``context`` apart).
        line, column: 1-based, when known.
        path: the key path (``key`` problems).
    """

    kind: Literal["refused", "syntax", "error", "key"]
    message: str
    line: int | None = None
    column: int | None = None
    path: Key = ()
    context: str | None = None


@dataclass
class YamlDocument:
    """A parsed document: its data (``None`` when empty or unreadable), the line of every key path (``()`` is the
    document's first line; list items by index) and the problems found."""

    data: Any = None
    lines: dict[Key, int] = field(default_factory=dict)
    problems: list[YamlProblem] = field(default_factory=list)


def _located(kind: Literal["refused", "syntax"], exc: yaml.MarkedYAMLError) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    return YamlProblem(kind, str(exc.problem or ""), mark.line + 1 if mark else None,
                       mark.column + 1 if mark else None, context=exc.context)


def load_with_lines(text: str) -> YamlDocument:
    """Parse ``text`` with :class:`BoundedLoader`, recording the line of each key path.

    Merge keys (``<<: *defaults``) are applied; a duplicate key is a ``key`` problem (the later value would
    silently win), as is a key that is not a plain scalar (it is dropped). Nothing here raises for bad input.
    """
    doc = YamlDocument()
    try:
        loader = BoundedLoader(text)   # the reader checks the characters here (a NUL byte is refused)
    except YamlLimitError as exc:
        doc.problems.append(_located("refused", exc))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(YamlProblem("error", str(exc)))
        return doc

    def walk(node: yaml.Node, path: Key) -> Any:
        doc.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = loader.construct_object(knode, deep=True)
                line = knode.start_mark.line + 1
                if not isinstance(key, str | int | float | bool) or key is None:
                    doc.problems.append(YamlProblem("key", "keys must be plain scalars", line, path=path))
                    continue
                if key in out:
                    doc.problems.append(YamlProblem("key", "duplicate key (the later value would silently win)",
                                                    line, path=(*path, key)))
                doc.lines[(*path, key)] = line
                out[key] = walk(vnode, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(v, (*path, i)) for i, v in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        node = loader.get_single_node()
        doc.data = walk(node, ()) if node is not None else None
    except YamlLimitError as exc:
        doc.data, doc.problems = None, [_located("refused", exc)]
    except yaml.MarkedYAMLError as exc:
        doc.data, doc.problems = None, [_located("syntax", exc)]
    except yaml.YAMLError as exc:
        doc.data, doc.problems = None, [YamlProblem("error", str(exc))]
    finally:
        loader.dispose()
    return doc
