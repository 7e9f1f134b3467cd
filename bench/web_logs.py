"""Serving a 50 MB log: the web (uvicorn) beside Debian's nginx serving the
same files in the same run.

A temporary log root holds a 50 MB oslo.log-style text log and its gzip.
The web runs in its own process (uvicorn, one worker, the app of
``gatekeeper.web.app.make_app`` over that log root); nginx runs with a
temporary configuration on a free port (one worker, ``sendfile on``, and its
gunzip module for clients that do not take gzip). Each file is fetched by
``curl`` (output to /dev/null), interleaved, several times; throughput is
the median in MB/s (10^6 bytes of what the client received: the gzip's
bytes when it takes gzip, the text when it does not).

    .venv/bin/python bench/web_logs.py [--repeat 9] [--size-mb 50]

Needs ``nginx`` and ``curl`` (``scripts/system-deps.sh --bench``).
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TARGET = 0.5
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# Request ids and instance uuids are random, as in a real oslo.log: the
# gzip comes out about a quarter of the text, not a sliver of it.
LINE = (
    "2016-01-01 12:00:00.{ms:03d} 1234 {level} nova.compute.manager "
    "[req-{req}] [instance: {instance}] line {n} of a long log\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_logs(root: Path, size: int) -> None:
    """``big.txt`` of ``size`` bytes (more or less a line) and ``gz/big.txt.gz``."""
    root.mkdir(parents=True)
    levels = ["INFO"] * 8 + ["WARNING", "ERROR"]
    written, n = 0, 0
    with open(root / "big.txt", "w", encoding="utf-8") as out:
        block: list[str] = []
        while written < size:
            text = LINE.format(
                ms=n % 1000,
                level=levels[n % len(levels)],
                req=random.randbytes(16).hex(),
                instance=random.randbytes(8).hex(),
                n=n,
            )
            block.append(text)
            written += len(text)
            n += 1
            if len(block) == 10000:
                out.write("".join(block))
                block = []
        out.write("".join(block))
    (root / "gz").mkdir()
    with open(root / "big.txt", "rb") as src, gzip.open(root / "gz/big.txt.gz", "wb", 6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def start_nginx(work: Path, root: Path, port: int) -> subprocess.Popen[bytes]:
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    sendfile on;
    types {{ text/plain txt; }}
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        # /gz/big.txt is gz/big.txt.gz, inflated for a client without gzip.
        location /gz/ {{ gzip_static always; gunzip on; }}
    }}
}}
"""
    )
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)])
    wait_port(port, proc, "nginx")
    return proc


def start_web(work: Path, root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root), "--port", str(port), "--work", str(work)],
        env=env,
    )
    wait_port(port, proc, "the web")
    return proc


def serve(root: Path, port: int, work: Path) -> int:
    """The child: the web over ``root`` on ``port``."""
    import uvicorn

    from gatekeeper.config.site import SiteConfig
    from gatekeeper.db.engine import Database
    from gatekeeper.web.app import make_app
    from gatekeeper.web.context import WebContext

    site = SiteConfig.model_validate({"log-root": root, "state-dir": work / "state"})
    site.resolve(work)
    db = Database(f"sqlite:///{work / 'bench.db'}")
    db.migrate()
    app = make_app(WebContext(site=site, db=db, live=lambda: {}))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


def fetch(url: str, gzip_ok: bool) -> tuple[int, float]:
    """(bytes received, seconds) of one GET by curl."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url]
    if gzip_ok:
        argv[1:1] = ["-H", "Accept-Encoding: gzip"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="fetches of each (default 9)")
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve, args.port, args.work)
    for tool in (NGINX, "curl"):
        if not shutil.which(tool):
            print(f"{tool} is missing: scripts/system-deps.sh --bench installs it")
            return 2

    out = Console()
    with tempfile.TemporaryDirectory(prefix="bench-web-logs-") as tmp:
        work = Path(tmp)
        # nginx's worker drops to an unprivileged user when started as root.
        work.chmod(0o755)
        root = work / "logs"
        make_logs(root, args.size_mb * 1000 * 1000)
        (work / "nginx-tmp").mkdir()
        web_port, nginx_port = free_port(), free_port()
        procs = [start_nginx(work, root, nginx_port), start_web(work, root, web_port)]
        try:
            # case: (nginx's path, the web's path, whether the client takes gzip)
            cases = {
                "plain .txt": ("big.txt", "big.txt", False),
                ".gz, client takes gzip": ("gz/big.txt", "gz/big.txt.gz", True),
                ".gz, decompressed": ("gz/big.txt", "gz/big.txt.gz", False),
            }
            servers = {
                "nginx": f"http://127.0.0.1:{nginx_port}/",
                "web": f"http://127.0.0.1:{web_port}/logs/",
            }

            def url(server: str, case: str) -> str:
                return servers[server] + cases[case][0 if server == "nginx" else 1]

            speeds: dict[tuple[str, str], list[float]] = {}
            sizes: dict[tuple[str, str], int] = {}
            for case in cases:
                for server in servers:
                    fetch(url(server, case), cases[case][2])  # warm caches and servers
            for _ in range(args.repeat):
                for case in cases:
                    for server in servers:  # interleaved: drift hits both alike
                        size, seconds = fetch(url(server, case), cases[case][2])
                        speeds.setdefault((case, server), []).append(size / seconds / 1e6)
                        sizes[(case, server)] = size
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    table = Table(
        title=f"a {args.size_mb} MB log, {args.repeat} fetches each by curl",
        caption="MB/s: median of bytes received / time; ratio: web / nginx (target >= "
        f"{TARGET:.1f}); one uvicorn worker beside one nginx worker, {os.cpu_count()} cores",
    )
    for column in ("case", "bytes", "nginx MB/s", "web MB/s", "ratio", "verdict"):
        table.add_column(column, justify="left" if column == "case" else "right")
    met = True
    for case in cases:
        nginx = statistics.median(speeds[(case, "nginx")])
        web = statistics.median(speeds[(case, "web")])
        if sizes[(case, "nginx")] != sizes[(case, "web")]:
            out.print(
                f"[red]{case}: nginx sent {sizes[(case, 'nginx')]} bytes, web sent "
                f"{sizes[(case, 'web')]}[/red]"
            )
            met = False
        ok = web / nginx >= TARGET
        met = met and ok
        table.add_row(
            case,
            f"{sizes[(case, 'web')]:,}",
            f"{nginx:.0f}",
            f"{web:.0f}",
            f"{web / nginx:.2f}",
            "met" if ok else "NOT met",
        )
    out.print(table)
    out.print(
        f"target: at least {TARGET:.1f}x nginx's throughput in every case: "
        + ("met" if met else "NOT met")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
