"""What every page may read: the site, the database, and the scheduler's live state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database

#: The scheduler's live state, as ``gatekeeper status --json`` prints it:
#: in-process a call into the running app, in a split site an operator
#: ``status`` request over Gearman. Raises ``GatekeeperError`` when the
#: scheduler cannot be asked.
LiveStatus = Callable[[], Mapping[str, object]]
#: An operator request (``enqueue``, ``dequeue``, ``promote``) sent with the
#: signed-in user's token, answered by the scheduler's admin worker exactly
#: as the CLI's are (its token check, its audit row): in-process its
#: handler, in a split site ``admin.call`` over Gearman. Takes the function,
#: its arguments and the token; returns the result. Raises
#: ``GatekeeperError`` with the scheduler's reason when refused or failed.
Operate = Callable[[str, Mapping[str, object], str], object]


@dataclass
class WebContext:
    site: SiteConfig
    db: Database
    live: LiveStatus
    #: The URL people reach this web at, ending in "/" (``web.url``, else
    #: ``http://<listen>/``); every link the pages and reports make starts here.
    base_url: str = "http://127.0.0.1:8080/"
    #: Extra values for templates (the version, the site's name...).
    extra: dict[str, object] = field(default_factory=dict)
    #: What ``/metrics`` serves: the app's registry when it runs in this
    #: process (``Gatekeeper.metrics.prometheus.registry``); None: the levels
    #: the database knows (nodes by state, label and provider) only.
    metrics: CollectorRegistry | None = None
    #: Provider -> until when (epoch) the in-process pool holds back its
    #: launches after failures (``Pool.backing_off``); None: no pool here.
    pool_backoff: Callable[[], Mapping[str, float]] | None = None
    #: The site's operator token secret (``admin.secret-file``): the web
    #: checks a pasted token with it. None: no sign-in here, read-only.
    secret: bytes | None = None
    #: Where operator requests go; None: no scheduler to ask, read-only.
    operate: Operate | None = None
