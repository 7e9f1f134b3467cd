"""Known failures: the signatures of the site's ``failures/`` directory.

One YAML file per signature, as elastic-recheck kept one query per bug::

    id: nova-libvirt-hangup
    description: libvirt closed the connection under nova-compute
    bug: https://bugs.launchpad.net/nova/+bug/1234567
    files: [logs/screen-n-cpu.txt*]
    patterns:
      - 'libvirtError: End of file while reading data'
    job: '^gate-tempest-dsvm-'      # optional: which jobs, projects, branches
    project: '^openstack/nova$'

``files`` are globs on a path under the build's log directory (``*`` and
``?`` stay inside one directory, ``**`` crosses them); default
``console.txt``. ``patterns`` and the filters are RE2 expressions
(google-re2): RE2 runs in time linear in the text, whatever the expression,
so no signature anyone writes can stall the scanner that every failed build
goes through. A pattern matches one line of a log file.

A file that does not load is an error naming the file, the line and the key
(``failures/x.yaml:7: patterns[1]: not an RE2 expression: missing )``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

import re2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gatekeeper.config import yamlmarks
from gatekeeper.config.loader import validate
from gatekeeper.errors import ConfigError
from gatekeeper.model.names import log_glob_problem

log = logging.getLogger(__name__)

__all__ = [
    "Signature",
    "SignatureSet",
    "compile_re2",
    "glob_regex",
    "load_signature",
    "load_signatures",
]

#: RE2's memory budget per expression (its default is 8 MiB): a pattern that
#: needs more is refused at load rather than slowing every scan.
RE2_MAX_MEM = 8 << 20


def re2_options() -> re2.Options:
    """The options every signature expression is compiled with: errors are
    raised (not also printed by RE2 to stderr), UTF-8 text."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    return options


def compile_re2(pattern: str) -> re2._Regexp:
    """``pattern`` compiled by RE2 for bytes.

    :raises ValueError: RE2 refuses it (the message is RE2's own).
    """
    try:
        return re2.compile(pattern.encode("utf-8"), options=re2_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"not an RE2 expression: {reason}") from None


# \A and \z: a pattern is searched one line at a time, where ^ and $ say it.
_TEXT_ANCHOR = re.compile(r"(?<!\\)(?:\\\\)*\\[Az]")


def _re2_pattern(value: str) -> str:
    if not value:
        raise ValueError("an empty pattern matches every line")
    compile_re2(value)
    if _TEXT_ANCHOR.search(value):
        raise ValueError("\\A and \\z are not for one line: use ^ and $")
    return value


def _log_glob(value: str) -> str:
    problem = log_glob_problem(value)
    if problem is not None:
        raise ValueError(f"{value!r} {problem}")
    return value


Re2Pattern = Annotated[str, AfterValidator(_re2_pattern)]
LogGlob = Annotated[str, AfterValidator(_log_glob)]


def glob_regex(glob: str) -> re.Pattern[str]:
    """A log glob as a regular expression on a relative POSIX path:
    ``*`` and ``?`` stay within one directory, ``**`` crosses them."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class Signature(BaseModel):
    """One known failure. Frozen: the scanner's threads share it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    description: str = Field(min_length=1, max_length=500)
    bug: str = Field(default="", pattern=r"^(?:https?://\S+)?$", max_length=1000)
    files: list[LogGlob] = Field(default_factory=lambda: ["console.txt"], min_length=1)
    patterns: list[Re2Pattern] = Field(min_length=1)
    job: Re2Pattern | None = None
    project: Re2Pattern | None = None
    branch: Re2Pattern | None = None

    @cached_property
    def _globs(self) -> list[re.Pattern[str]]:
        return [glob_regex(g) for g in self.files]

    @cached_property
    def _filters(self) -> list[tuple[str, re2._Regexp]]:
        given = (("job", self.job), ("project", self.project), ("branch", self.branch))
        return [(name, compile_re2(value)) for name, value in given if value is not None]

    def looks_at(self, path: str) -> bool:
        """Whether the log file at ``path`` (relative, POSIX) is one of its files."""
        return any(g.match(path) for g in self._globs)

    def applies_to(self, job: str, project: str, branch: str) -> bool:
        """Whether a build of ``job`` for ``project`` on ``branch`` is one it
        is about (each filter given is searched for in the name)."""
        names = {"job": job, "project": project, "branch": branch}
        return all(regex.search(names[key].encode("utf-8")) for key, regex in self._filters)


@dataclass(frozen=True)
class SignatureSet:
    """The signatures a site knows, by id; what one load of ``failures/`` gave."""

    signatures: tuple[Signature, ...] = ()
    #: Where they came from (None: built in code, as tests do).
    directory: Path | None = None

    def __iter__(self) -> Iterator[Signature]:
        return iter(self.signatures)

    def __len__(self) -> int:
        return len(self.signatures)

    def get(self, signature_id: str) -> Signature | None:
        return next((s for s in self.signatures if s.id == signature_id), None)

    def for_build(self, job: str, project: str, branch: str) -> list[Signature]:
        """The signatures whose filters let a build of ``job``/``project``/``branch`` in."""
        return [s for s in self.signatures if s.applies_to(job, project, branch)]


def load_signature(path: Path) -> Signature:
    """One signature file.

    :raises ConfigError: unreadable, not YAML, or not a signature (each
        problem as ``file:line: key: message``).
    """
    data, marks = yamlmarks.load(path)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:{marks.get((), 1)}: a signature must be a mapping "
            "(id, description, bug, files, patterns)"
        )
    return validate(Signature, data, marks, path)


def load_signatures(directory: Path) -> SignatureSet:
    """Every ``*.yaml`` of ``directory`` (none when it does not exist).

    :raises ConfigError: every problem of every file, and ids used twice.
    """
    if not directory.is_dir():
        log.info("no known-failure signatures: %s is not a directory", directory)
        return SignatureSet((), directory)
    errors: list[str] = []
    loaded: list[tuple[Path, Signature]] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            loaded.append((path, load_signature(path)))
        except ConfigError as exc:
            errors.extend(exc.errors)
    errors.extend(_duplicates(loaded))
    if errors:
        raise ConfigError(errors)
    log.info("loaded %d known-failure signatures from %s", len(loaded), directory)
    return SignatureSet(tuple(s for _, s in loaded), directory)


def _duplicates(loaded: Sequence[tuple[Path, Signature]]) -> Iterable[str]:
    first: dict[str, Path] = {}
    for path, signature in loaded:
        if signature.id in first:
            yield f"{path}:1: id: {signature.id!r} is already the id of {first[signature.id]}"
        else:
            first[signature.id] = path
