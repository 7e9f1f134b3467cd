"""The one Jinja2 environment of the web: autoescaped, with the site's filters."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.templating import Jinja2Templates

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Starlette turns autoescape on for every template; every outside string
# (commit subjects, comments, job output, file names) is escaped on render.
templates = Jinja2Templates(directory=str(TEMPLATES))


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + " UTC"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


templates.env.filters["when"] = _when
templates.env.filters["duration"] = _duration
