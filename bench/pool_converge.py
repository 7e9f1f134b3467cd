"""From an empty pool to min-ready 100 across three clouds, against the ideal.

Three ``openstack`` providers on the in-process fake cloud (max-servers
50/50/20, each server ACTIVE ``--boot-delay`` seconds after it is created,
each provider limited to ``--rate`` API calls per second), a real sshd on
127.0.0.1 answering for every server (a node is READY only when SSH
answers), SQLite. The pool runs its own thread as in production; the clock
stops when 100 nodes are READY.

The ideal is computed from the delays and limits: a provider that must
create n servers at ``rate`` creates per second has its last one ACTIVE
after ``n / rate + boot_delay``, so the ideal is the best split of the 100
nodes over the providers within their max-servers, of the slowest
provider's time. The second case makes the 20-server provider fail every
launch (its servers go to ERROR): the other two must carry all 100 (50
each), and the ideal is computed for them alone.

    .venv/bin/python bench/pool_converge.py [--boot-delay 10] [--rate 20]

Target: within 1.2x of the ideal in both cases.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.nodes import NodeStore
from gatekeeper.model.node import NodeState
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.cloud import unregister_cloud
from tests.fixtures.fake_cloud import FakeCloud, registered
from tests.fixtures.sshd import running_sshd

MIN_READY = 100
MAX_SERVERS = {"east": 50, "west": 50, "north": 20}


def ideal(providers: dict[str, int], rate: float, boot_delay: float) -> float:
    """Min over splits of the slowest provider's n / rate + boot_delay."""
    best = float("inf")
    for n in range(1, MIN_READY + 1):
        # Can the providers take MIN_READY with at most n each?
        if sum(min(cap, n) for cap in providers.values()) >= MIN_READY:
            best = n / rate + boot_delay
            break
    return best


def converge(
    base: Path, port: int, rate: float, boot_delay: float, failing: set[str]
) -> tuple[float, dict[str, int], int]:
    """Seconds to MIN_READY READY nodes; READY per provider; servers in the clouds."""
    clouds = {name: registered(FakeCloud(boot_delay=boot_delay)) for name in MAX_SERVERS}
    for name in failing:
        clouds[name].fail_boots = True
    site = SiteConfig.model_validate(
        {
            "state-dir": str(base / "state"),
            "providers": [
                {
                    "name": name,
                    "driver": "openstack",
                    "cloud": clouds[name].name,
                    "max-servers": cap,
                    "rate": rate,
                    "poll-interval": 0.5,
                    "boot-timeout": 60,
                    "launch-retries": 2,
                    "ssh-port": port,
                    "root": str(base / name),
                    "images": [
                        {"label": "trusty", "base-image": "ubuntu-trusty", "username": "root"}
                    ],
                }
                for name, cap in MAX_SERVERS.items()
            ],
            "labels": [{"name": "trusty", "min-ready": MIN_READY}],
            "pool": {"interval": 0.5, "launch-threads": 128},
        }
    ).resolve(base)
    db = Database(site.database)
    db.migrate()
    providers = {p.name: make_provider(p, site.pool.name) for p in site.providers}
    pool = Pool(site, db, providers, site.labels)
    nodes = NodeStore(db)
    began = time.monotonic()
    pool.start()
    try:
        pause = threading.Event()
        while len(nodes.list(state=NodeState.READY)) < MIN_READY:
            if time.monotonic() - began > 300:
                raise RuntimeError("no convergence in 300s")
            pause.wait(0.05)
        elapsed = time.monotonic() - began
    finally:
        pool.stop()
    ready = nodes.list(state=NodeState.READY)
    per_provider = {name: sum(1 for n in ready if n.provider == name) for name in MAX_SERVERS}
    servers = sum(len(c.servers()) for c in clouds.values())
    db.dispose()
    for cloud in clouds.values():
        unregister_cloud(cloud.name)
    return elapsed, per_provider, servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boot-delay", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if getpass.getuser() != "root" and not Path("/usr/sbin/sshd").exists():
        print("needs /usr/sbin/sshd")
        return 2
    table = Table(
        title=f"empty -> min-ready {MIN_READY}; max-servers 50/50/20, "
        f"boot {args.boot_delay:g}s, {args.rate:g} calls/s per provider"
    )
    for column in ("case", "seconds", "ideal", "ratio", "READY east/west/north", "servers"):
        table.add_column(column, justify="left" if column == "case" else "right")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        # The images have no private-key: a node is READY when its key exchange is done.
        with running_sshd(base) as server:
            cases = [("all providers healthy", set()), ("north fails every launch", {"north"})]
            for i, (case, failing) in enumerate(cases):
                run_dir = base / f"run{i}"
                run_dir.mkdir()
                elapsed, per_provider, servers = converge(
                    run_dir, server.port, args.rate, args.boot_delay, failing
                )
                healthy = {k: v for k, v in MAX_SERVERS.items() if k not in failing}
                best = ideal(healthy, args.rate, args.boot_delay)
                ratio = elapsed / best
                ok = ok and ratio <= 1.2 and servers == MIN_READY
                table.add_row(
                    case,
                    f"{elapsed:.2f}",
                    f"{best:.2f}",
                    f"{ratio:.2f}",
                    "/".join(str(per_provider[n]) for n in MAX_SERVERS),
                    str(servers),
                )
    Console().print(table)
    print(f"target: within 1.2x of ideal, no leftover servers: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
