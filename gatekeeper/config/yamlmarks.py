"""Load YAML and remember which line every mapping key and sequence item came from.

Configuration errors must name the line a person has to edit, and pydantic
only knows key paths. :func:`load` therefore returns, beside the data, a
:data:`Marks` dict from key path (``("pipelines", 1, "trigger")``) to the
1-based line of that key or item, so a validation error can be placed.

Duplicate mapping keys are an error here: PyYAML silently keeps the last one,
which would hide half of a pipeline definition.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from gatekeeper.errors import ConfigError

log = logging.getLogger(__name__)

KeyPath = tuple[Any, ...]
Marks = dict[KeyPath, int]

__all__ = ["KeyPath", "Marks", "load", "load_text"]


class _MarkingLoader(yaml.SafeLoader):
    """A SafeLoader; kept as its own class so our constructors never leak into PyYAML's."""


def _walk(
    loader: _MarkingLoader,
    node: yaml.Node,
    path: KeyPath,
    marks: Marks,
    errors: list[str],
    file: str,
    active: set[int],
) -> None:
    # An alias can point back to an enclosing node; stop rather than recurse forever.
    if id(node) in active:
        return
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = loader.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    # PyYAML reports unhashable keys itself when constructing.
                    continue
                line = key_node.start_mark.line + 1
                if key in seen:
                    errors.append(
                        f"{file}:{line}: duplicate key {key!r} (first defined at line {seen[key]})"
                    )
                    continue
                seen[key] = line
                marks.setdefault((*path, key), line)
                _walk(loader, value_node, (*path, key), marks, errors, file, active)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                marks.setdefault((*path, index), item.start_mark.line + 1)
                _walk(loader, item, (*path, index), marks, errors, file, active)
    finally:
        active.discard(id(node))


def load_text(text: str, file: str) -> tuple[Any, Marks]:
    """Parse ``text`` (named ``file`` in messages) into data and marks.

    :raises ConfigError: on a YAML syntax error or a duplicate mapping key.
    """
    loader = _MarkingLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        marks: Marks = {(): node.start_mark.line + 1}
        errors: list[str] = []
        _walk(loader, node, (), marks, errors, file, set())
        if errors:
            raise ConfigError(errors)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        raise ConfigError(f"{file}:{line}: YAML syntax error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}:1: YAML syntax error: {exc}") from exc
    finally:
        loader.dispose()
    return data, marks


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
