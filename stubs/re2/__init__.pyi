# The parts of google-re2 gatekeeper uses (it ships no types).
from collections.abc import Iterator
from typing import Any

class error(Exception): ...  # noqa: N801, N818 (its name in re2)

class Options:
    log_errors: bool
    max_mem: int
    never_capture: bool
    never_nl: bool
    case_sensitive: bool
    def __init__(self) -> None: ...

class _Match:
    def start(self, group: int = 0) -> int: ...
    def end(self, group: int = 0) -> int: ...
    def group(self, *groups: int) -> Any: ...

class _Regexp:
    def search(
        self, text: bytes, pos: int | None = None, endpos: int | None = None
    ) -> _Match | None: ...
    def match(
        self, text: bytes, pos: int | None = None, endpos: int | None = None
    ) -> _Match | None: ...
    def finditer(
        self, text: bytes, pos: int | None = None, endpos: int | None = None
    ) -> Iterator[_Match]: ...

def compile(pattern: str | bytes, options: Options | None = None) -> _Regexp: ...
