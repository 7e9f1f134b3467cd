"""Turn YAML data into pydantic models, with errors a person can act on.

Every problem becomes one line ``file:line: key.path[2].sub: message``, the
line being the nearest one :mod:`gatekeeper.config.yamlmarks` recorded for
that path. Unknown keys get a "did you mean" from the model's own fields.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gatekeeper.config import yamlmarks
from gatekeeper.config.site import SiteConfig
from gatekeeper.config.yamlmarks import Marks, render_path
from gatekeeper.errors import ConfigError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "describe",
    "format_error",
    "line_for",
    "load_site",
    "model_keys",
    "render_path",
    "suggest",
    "unknown_key_message",
    "validate",
]


def line_for(marks: Marks, path: Sequence[Any]) -> int:
    """The line of ``path``, or of its nearest ancestor that has one (1 if none)."""
    key = tuple(path)
    while key:
        if key in marks:
            return marks[key]
        key = key[:-1]
    return marks.get((), 1)


def format_error(file: Path | str, marks: Marks, path: Sequence[Any], message: str) -> str:
    """One error line: ``file:line: path: message`` (the path is left out when empty)."""
    where = render_path(tuple(path))
    prefix = f"{file}:{line_for(marks, path)}: "
    return f"{prefix}{where}: {message}" if where else f"{prefix}{message}"


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word``, if any is close enough."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_message(key: Any, choices: Iterable[str]) -> str:
    """``unknown key 'trigerr' (did you mean 'trigger'?)``."""
    hint = suggest(str(key), choices)
    return f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")


def model_keys(model: type[BaseModel]) -> list[str]:
    """Every spelling of every field a YAML mapping may use for ``model``.

    That is the alias where a field has one (``merge-mode``, not ``merge_mode``:
    :func:`validate` does not accept Python's field names in a file).
    """
    return list(_model_keys(model))


@functools.cache
def _model_keys(model: type[BaseModel]) -> tuple[str, ...]:
    names: list[str] = []
    for name, field in model.model_fields.items():
        va = field.validation_alias
        if isinstance(va, str):
            names.append(va)
        elif va is not None and hasattr(va, "choices"):
            names.extend(c for c in va.choices if isinstance(c, str))
        elif field.alias:
            names.append(field.alias)
        else:
            names.append(name)
    extra = getattr(model, "extra_keys", None)
    if callable(extra):
        names.extend(extra())
    return tuple(dict.fromkeys(names))


def describe(value: Any) -> str:
    """A value as a message shows it: ``'check'``, ``5``, ``true``, ``a mapping``, ``a list``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        text = repr(value)
        return f"a list ({text})" if len(text) <= 40 else "a list"
    return f"a {type(value).__name__}"


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Optional/Union/Annotated."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


def _field_type(model: type[BaseModel], key: Any) -> Any:
    for name, field in model.model_fields.items():
        spellings = {name, field.alias}
        va = field.validation_alias
        if isinstance(va, str):
            spellings.add(va)
        elif va is not None and hasattr(va, "choices"):
            spellings.update(c for c in va.choices if isinstance(c, str))
        if key in spellings:
            return field.annotation
    return None


def _model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """Best effort: the model class that validates the mapping at ``path``."""
    candidates: list[Any] = [model]
    for part in path:
        nxt: list[Any] = []
        for cand in candidates:
            for tp in _unwrap(cand):
                if isinstance(tp, type) and issubclass(tp, BaseModel):
                    ft = _field_type(tp, part)
                    if ft is not None:
                        nxt.append(ft)
                    continue
                origin = typing.get_origin(tp)
                args = typing.get_args(tp)
                if origin in (list, tuple, Sequence) and isinstance(part, int) and args:
                    nxt.append(args[0])
                elif origin is dict and len(args) == 2:
                    nxt.append(args[1])
        candidates = nxt
        if not candidates:
            return None
    for cand in candidates:
        for tp in _unwrap(cand):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                return tp
    return None


def _data_path(data: Any, loc: Sequence[Any]) -> tuple[list[Any], bool]:
    """Map pydantic's ``loc`` onto the real data, dropping union-branch tags.

    Returns the path and whether its last element is a key missing from the data
    (a required field that was not given).
    """
    path: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, list)
            and isinstance(part, int)
            and not isinstance(part, bool)
            and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and i == len(loc) - 1 and isinstance(part, str):
            return [*path, part], True
        # Anything else is a tag pydantic adds for a union branch or a validator.
    return path, False


# pydantic's error types, said in the words of a YAML file.
_EXPECTED = {
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dict_type": "a mapping",
    "list_type": "a list",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
}


def _message(error: Any, model: type[BaseModel], path: list[Any]) -> tuple[list[Any], str]:
    kind = error["type"]
    msg = str(error["msg"])
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden" and path:
        parent = _model_at(model, path[:-1])
        choices = model_keys(parent) if parent is not None else []
        return path, unknown_key_message(path[-1], choices)
    if kind == "missing":
        return path[:-1], f"missing required key '{path[-1]}'" if path else msg
    if kind in _EXPECTED:
        return path, f"expected {_EXPECTED[kind]}, got {describe(error.get('input'))}"
    if kind == "literal_error" and "expected" in ctx:
        return path, f"expected {ctx['expected']}, got {describe(error.get('input'))}"
    for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx and kind.startswith(("greater_than", "less_than")):
            got = describe(error.get("input"))
            return path, f"expected a number {sign} {ctx[bound]}, got {got}"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    if "path" in ctx and isinstance(ctx["path"], tuple):
        # Our own validators may point deeper than the field they validate.
        path = path + list(ctx["path"])
    return path, msg


def validation_errors(
    exc: ValidationError, model: type[BaseModel], data: Any, marks: Marks, file: Path | str
) -> list[str]:
    """Format every error in ``exc`` as a ``file:line: path: message`` line."""
    found: dict[str, int] = {}
    placed: list[tuple[str, list[Any], str]] = []
    for error in exc.errors():
        path, missing = _data_path(data, error["loc"])
        if missing and error["type"] != "missing":
            path = path[:-1]
        path, msg = _message(error, model, path)
        placed.append((error["type"], path, msg))
    # A misspelt required key is one mistake: "unknown key 'evnt' (did you mean
    # 'event'?)" says it all, so the "missing required key 'event'" beside it goes.
    misspelt = {
        (tuple(path[:-1]), hint)
        for kind, path, msg in placed
        if kind == "extra_forbidden" and path and (hint := _hint(msg)) is not None
    }
    for kind, path, msg in placed:
        if kind == "missing" and (tuple(path), msg.rsplit("'", 2)[-2]) in misspelt:
            continue
        found.setdefault(format_error(file, marks, path, msg), line_for(marks, path))
    # In file order, which is how a person fixes them.
    return sorted(found, key=lambda text: found[text])


def _hint(message: str) -> str | None:
    found = re.search(r"\(did you mean '([^']*)'\?\)$", message)
    return found.group(1) if found else None


def validate(model: type[M], data: Any, marks: Marks, file: Path, by_name: bool | None = None) -> M:
    """Validate ``data`` as ``model``; the file and marks place every error.

    ``by_name=False`` accepts only the YAML spelling of a field (its alias),
    as Zuul does: ``merge_mode`` is then an unknown key. ``None`` leaves it
    to the model's configuration.

    :raises ConfigError: with one line per problem.
    """
    try:
        return model.model_validate(data, by_name=by_name)
    except ValidationError as exc:
        raise ConfigError(validation_errors(exc, model, data, marks, file)) from exc


def load_site(path: Path | None, base: Path) -> SiteConfig:
    """Read the site file (``None``: every default) and resolve its paths against ``base``.

    :raises ConfigError: when the file is unreadable, not YAML, not a mapping,
        or does not match the site schema.
    """
    if path is None:
        return SiteConfig().resolve(base)
    data, marks = yamlmarks.load(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the site file must be a mapping of settings")
    site = validate(SiteConfig, data, marks, path)
    log.debug("loaded site configuration from %s", path)
    return site.resolve(base)


#: The site file a command reads when none is named, in the current directory.
DEFAULT_SITE_FILE = "gatekeeper.yaml"


def load_local_site(path: Path | None) -> SiteConfig:
    """The site a command runs with: ``path``, else ``./gatekeeper.yaml`` when
    there is one, else every default; paths resolve against the current directory.

    :raises ConfigError: see :func:`load_site`.
    """
    if path is None and Path(DEFAULT_SITE_FILE).exists():
        path = Path(DEFAULT_SITE_FILE)
    return load_site(path, Path.cwd())
