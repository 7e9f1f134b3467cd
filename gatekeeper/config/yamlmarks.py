"""Load YAML and remember which line every mapping key and sequence item came from.

Configuration errors must name the line a person has to edit, and pydantic
only knows key paths. :func:`load` therefore returns, beside the data, a
:data:`Marks` dict from key path (``("pipelines", 1, "trigger")``) to the
1-based line of that key or item, so a validation error can be placed.

Duplicate mapping keys are an error here (placed at the second key, named by
the path of their mapping): PyYAML silently keeps the last one, which would
hide half of a pipeline definition.

Speed: libyaml (``CSafeLoader``) parses and composes the node tree, and
:class:`_Builder` turns the nodes into data and marks in one pass. PyYAML's
pure-Python loader took over a second for OpenStack's 10,000-line layout; this
costs about what ``yaml.load(text, Loader=yaml.CSafeLoader)`` does. Scalars
other than plain strings, and the rare ``!!set``/``!!omap``/``!!pairs``
collections, are still constructed by PyYAML's ``SafeConstructor`` so values
mean exactly what they mean to ``yaml.safe_load``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from gatekeeper.errors import ConfigError

log = logging.getLogger(__name__)

KeyPath = tuple[Any, ...]
Marks = dict[KeyPath, int]

__all__ = ["KeyPath", "Marks", "load", "load_text", "render_path"]

# libyaml when PyYAML was built with it; the pure-Python parser gives the same nodes.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"


def render_path(path: KeyPath) -> str:
    """``("pipelines", 1, "trigger")`` → ``pipelines[1].trigger``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


#: How many entries aliases may expand to, in all. Each alias is walked again
#: under its own path (its lines marked there), and the data it names is
#: validated once per path: a few lines of nested aliases ("billion laughs")
#: would otherwise be billions of entries, and validate would never end.
ALIAS_LIMIT = 200_000


class _Builder:
    """Constructs data from a composed node tree, recording marks and duplicate keys.

    An alias yields the very object its anchor built (as PyYAML does), and its
    keys are marked again under the alias's path; ``active`` stops that walk on
    a structure that contains itself.
    """

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.marks: Marks = {}
        self.errors: list[str] = []
        self.built: dict[int, Any] = {}
        self.active: set[int] = set()
        self.alias_entries = 0

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        ident = id(node)
        if ident in self.built:
            self._mark(node, path)
            return self.built[ident]
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            value = node.value if tag == _STR else self._construct(node)
            self.built[ident] = value
            return value
        if tag == _SEQ and isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        if tag == _MAP and isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        # !!set, !!omap, !!pairs, or a tag the safe loader refuses: PyYAML decides.
        value = self._construct(node, deep=True)
        self.built[ident] = value
        return value

    def _construct(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's value for ``node``.

        :raises ConfigError: a value Python refuses, such as an integer of
            more than 4300 digits (PyYAML lets that ValueError through).
        """
        try:
            return self.loader.construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise ConfigError(
                f"{self.file}:{node.start_mark.line + 1}: cannot read this value: {exc}"
            ) from None

    def _sequence(self, node: yaml.SequenceNode, path: KeyPath) -> list[Any]:
        items: list[Any] = []
        ident = id(node)
        self.built[ident] = items
        self.active.add(ident)
        marks = self.marks
        for index, item in enumerate(node.value):
            here = (*path, index)
            if here not in marks:
                marks[here] = item.start_mark.line + 1
            items.append(self.build(item, here))
        self.active.discard(ident)
        return items

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        data: dict[Any, Any] = {}
        ident = id(node)
        self.built[ident] = data
        self.active.add(ident)
        marks = self.marks
        own: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        merges: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.extend(self._merge_sources(node, value_node))
                continue
            key = self._key(node, key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                where = f"{render_path(path)}: " if path else ""
                self.errors.append(
                    f"{self.file}:{line}: {where}duplicate key {key!r}"
                    f" (first defined at line {seen[key]})"
                )
                continue
            seen[key] = line
            here = (*path, key)
            if here not in marks:
                marks[here] = line
            own[key] = self.build(value_node, here)
        # PyYAML's order: the last merged mapping wins over earlier ones, own keys over all;
        # a merged key is marked at its line in the mapping that wins.
        for source in reversed(merges):
            self._mark(source, path)
        for source in merges:
            data.update(self.build(source, path))
        data.update(own)
        self.active.discard(ident)
        return data

    def _merge_sources(self, node: yaml.Node, value: yaml.Node) -> list[yaml.MappingNode]:
        """The mappings a ``<<`` key merges, lowest priority first."""
        if isinstance(value, yaml.MappingNode):
            return [value]
        found = value
        if isinstance(value, yaml.SequenceNode):
            others = [sub for sub in value.value if not isinstance(sub, yaml.MappingNode)]
            if not others:
                return list(reversed(value.value))
            found = others[0]
        kind = "a sequence" if isinstance(found, yaml.SequenceNode) else "a scalar"
        raise ConstructorError(
            "while constructing a mapping",
            node.start_mark,
            f"expected a mapping or list of mappings for merging, but found {kind}",
            found.start_mark,
        )

    def _key(self, node: yaml.Node, key_node: yaml.Node) -> Any:
        if key_node.tag == _STR and isinstance(key_node, yaml.ScalarNode):
            return key_node.value
        key = self._construct(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found unhashable key",
                key_node.start_mark,
            ) from None
        return key

    def _mark(self, node: yaml.Node, path: KeyPath) -> None:
        """Record the lines under ``node`` (already built) for another path to it."""
        ident = id(node)
        if ident in self.active:
            return
        self.alias_entries += 1
        if self.alias_entries > ALIAS_LIMIT:
            raise ConfigError(
                f"{self.file}:{node.start_mark.line + 1}: aliases expand to more than "
                f"{ALIAS_LIMIT} entries (aliases nested in aliases?)"
            )
        self.active.add(ident)
        marks = self.marks
        try:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.tag == _MERGE:
                        continue
                    here = (*path, self._key(node, key_node))
                    marks.setdefault(here, key_node.start_mark.line + 1)
                    self._mark(value_node, here)
            elif isinstance(node, yaml.SequenceNode):
                for index, item in enumerate(node.value):
                    marks.setdefault((*path, index), item.start_mark.line + 1)
                    self._mark(item, (*path, index))
        finally:
            self.active.discard(ident)


def load_text(text: str, file: str) -> tuple[Any, Marks]:
    """Parse ``text`` (named ``file`` in messages) into data and marks.

    :raises ConfigError: on a YAML syntax error or a duplicate mapping key.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        builder = _Builder(loader, file)
        builder.marks[()] = node.start_mark.line + 1
        data = builder.build(node, ())
        if builder.errors:
            raise ConfigError(builder.errors)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise ConfigError(f"{file}:{line}: YAML syntax error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}:1: YAML syntax error: {exc}") from exc
    finally:
        loader.dispose()
    return data, builder.marks


def load(path: Path) -> tuple[Any, Marks]:
    """Read ``path`` and return its data and the line of every key and item.

    An empty file gives ``(None, {})``.

    :raises ConfigError: when the file cannot be read, is not valid YAML, or
        repeats a key in one mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return load_text(text, str(path))
