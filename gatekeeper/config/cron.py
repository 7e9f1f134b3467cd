"""Cron lines of ``trigger: timer:``, checked at load as APScheduler will read them.

A pipeline's timer is handed to the scheduler's clock as written; checking
each field here means a typo is reported with its file and line when the
layout loads, not when the timer would first have fired.
"""

from __future__ import annotations

import re

__all__ = ["cron_problem"]

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# Zuul v2's order (minute hour day month weekday [second]) and APScheduler's ranges:
# (name, lowest, highest, {name: number}).
_CRON_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {"last": 31}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, 1)}),
    ("day of week", 0, 6, {d: i for i, d in enumerate(_WEEKDAYS)}),
    ("second", 0, 59, {}),
]
_CRON_PART = re.compile(r"(?P<range>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>[^/]*))?")


def _cron_field(text: str, low: int, high: int, names: dict[str, int]) -> str | None:
    """What is wrong with one cron field (``*/15``, ``1-5``, ``mon-fri``, ``0,30``), or None."""
    for part in text.split(","):
        match = _CRON_PART.fullmatch(part)
        if match is None:
            return f"{part!r} is not a value, a range or a step"
        step = match.group("step")
        if step is not None and not (step.isdigit() and int(step) >= 1):
            return f"step {step!r} is not a positive number"
        if match.group("range") == "*":
            continue
        bounds: list[int] = []
        for item in match.group("range").split("-"):
            if item.isdigit():
                number = int(item)
            elif item.lower() in names:
                number = names[item.lower()]
            else:
                kind = f"a number or a name ({', '.join(names)})" if names else "a number"
                return f"{item!r} is not {kind}"
            if not low <= number <= high:
                return f"{item!r} is out of range {low}-{high}"
            bounds.append(number)
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            return f"range {match.group('range')!r} runs backwards"
    return None


def cron_problem(line: str) -> str | None:
    """What is wrong with a cron line (5 fields, or 6 with seconds), or None."""
    fields = line.split()
    if len(fields) not in (5, 6):
        return f"expected a cron line of 5 or 6 fields, got {line!r}"
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=False):
        problem = _cron_field(text, low, high, names)
        if problem is not None:
            return f"{what} {problem} in cron line {line!r}"
    return None
