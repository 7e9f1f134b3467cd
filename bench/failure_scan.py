"""Known-failure scanning: gatekeeper's scanner beside ``grep -E -f`` (the floor).

Generates the logs of ``--builds`` failed builds (``--size`` MB in all,
default 1024, devstack-style lines: timestamps, pids, request ids, log
levels, nova/neutron/oslo modules, a few planted failures), a share of
the files gzipped (``--gzip-share``), and ``--signatures`` RE2 signatures
written in the syntax RE2 and POSIX ERE share. Then, in the same run:

- the scanner (:class:`gatekeeper.insights.scanner.Scanner`), build by
  build, every signature looking at every file (``files: ['**']``), so both
  sides search every byte for every pattern;
- ``grep -E -f patterns`` with ``LC_ALL=C`` over the same files: plain ones
  by ``grep -r`` in one process, gzipped ones as ``zcat FILES | grep`` (not
  ``zgrep``, a shell script that starts a gzip per file: slower, a weaker
  floor). grep counts matching lines only; the scanner also finds which
  signature matched and where.

Throughput is decompressed bytes searched per second of wall time, the best
of ``--repeat`` runs of each side taken in turn (the machine's other load
falls on both alike). Peak
memory is the scanner's Python allocations (tracemalloc) while it scans the
corpus, shown for the full size and an eighth of it with the same number of
builds (files 8x smaller): it should not grow with the logs. RE2's own
compiled automata live in C++ and are bounded by their ``max_mem``.

The corpus goes into a temporary directory, removed at the end.

    .venv/bin/python bench/failure_scan.py [--size 1024] [--builds 500] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gatekeeper.insights.scanner import Scanner
from gatekeeper.insights.signatures import Signature

MB = 1 << 20

MODULES = [
    "nova.compute.manager",
    "nova.virt.libvirt.driver",
    "nova.scheduler.filter_scheduler",
    "nova.api.openstack.wsgi",
    "neutron.agent.linux.utils",
    "neutron.plugins.ml2.drivers.openvswitch.agent.ovs_neutron_agent",
    "oslo_messaging._drivers.amqpdriver",
    "oslo_db.sqlalchemy.engines",
    "keystonemiddleware.auth_token",
    "glance.api.v2.images",
    "cinder.volume.manager",
    "tempest.lib.common.rest_client",
]
LEVELS = ["DEBUG"] * 12 + ["INFO"] * 6 + ["WARNING", "ERROR"]
MESSAGES = [
    "Took {f} seconds to spawn the instance on the hypervisor.",
    'Lock "compute_resources" acquired by "instance_claim" :: waited {f}s',
    "Running cmd (subprocess): sudo ovs-vsctl --timeout=10 -- --may-exist add-port br-int tap{h}",
    'Request body: {{"server": {{"name": "tempest-{h}", "flavorRef": "42"}}}}',
    'GET /v2.1/servers/{u} HTTP/1.1" status: 200 len: 1843 time: {f}',
    "Received RPC response for message {h} in {f}s",
    "Instance {u} has been moved to another host; not deleting allocations",
    "Returning {n} hosts after filtering",
    "Unable to find image {u} locally, fetching from glance",
    "Port {u} updated; status ACTIVE, binding:host_id devstack-{n}",
    "VIF plugged for instance {u}, waited {f}s",
    "Created volume {u} with size {n}GB",
]
#: Lines that signatures are written to find: a few in a million.
FAILURES = [
    "libvirtError: End of file while reading data: Input/output error",
    "MessagingTimeout: Timed out waiting for a reply to message ID {h}",
    "OperationalError: (2006, 'MySQL server has gone away')",
    "NoValidHost: No valid host was found. There are not enough hosts available.",
    "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=9696): Max retries exceeded",
]
EXCEPTIONS = [
    "libvirtError",
    "MessagingTimeout",
    "OperationalError",
    "NoValidHost",
    "ConnectionError",
    "TimeoutException",
    "BuildAbortException",
    "PortBindingFailed",
    "VolumeNotFound",
    "ImageNotFound",
    "DBDeadlock",
    "Unauthorized",
    "ServerFault",
    "InstanceNotFound",
    "ProcessExecutionError",
    "OVSFWPortNotFound",
    "SSHTimeout",
    "BadRequest",
    "RescheduledException",
    "InvalidSharedStorage",
]
PHRASES = [
    "End of file while reading data",
    "Timed out waiting for a reply to message ID [0-9a-f]+",
    "\\(2006, .MySQL server has gone away",
    "No valid host was found",
    "Max retries exceeded",
    "(Connection refused|Connection reset by peer)",
    "Deadlock found when trying to get lock",
    "Failed to bind port [0-9a-f-]+ on host",
    "did not become (ACTIVE|available) within [0-9]+ s",
    "Exit code: (1|2|127); Stdout",
]


def signatures(count: int) -> list[Signature]:
    """``count`` signatures in the syntax RE2 and POSIX ERE share."""
    patterns: list[str] = []
    for i in range(count):
        exception = EXCEPTIONS[i % len(EXCEPTIONS)]
        phrase = PHRASES[(i // len(EXCEPTIONS)) % len(PHRASES)]
        kind = i % 3
        if kind == 0:
            patterns.append(f"{exception}: .*{phrase}")
        elif kind == 1:
            patterns.append(f"ERROR [a-z_.]+ .*{exception}.*{phrase}")
        else:
            patterns.append(f"^[0-9-]+ [0-9:.]+ [0-9]+ (ERROR|CRITICAL) .*{phrase}")
    return [
        Signature(id=f"sig-{i:03d}", description=f"known failure {i}", patterns=[p], files=["**"])
        for i, p in enumerate(patterns)
    ]


def line_pool(rng: random.Random, size: int = 20000) -> list[bytes]:
    """Devstack-style lines to draw from; FAILURES among them, rarely."""

    def fill(text: str) -> str:
        return text.format(
            f=f"{rng.random() * 10:.3f}",
            h=f"{rng.getrandbits(64):016x}",
            u=f"{rng.getrandbits(128):032x}",
            n=rng.randint(1, 64),
        )

    pool = []
    for _ in range(size):
        stamp = f"2026-12-06 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" + (
            f"{rng.random() * 60:06.3f}"
        )
        pid = rng.randint(1000, 65000)
        request = f"[req-{rng.getrandbits(128):032x} tempest-admin tempest-admin]"
        level = rng.choice(LEVELS)
        message = fill(rng.choice(MESSAGES))
        pool.append(f"{stamp} {pid} {level} {rng.choice(MODULES)} {request} {message}\n".encode())
    for failure in FAILURES:
        pool[rng.randrange(size)] = (
            f"2026-12-06 10:00:00.000 4242 ERROR {rng.choice(MODULES)} {fill(failure)}\n".encode()
        )
    return pool


FILES = [
    "console.txt",
    "logs/screen-n-cpu.txt",
    "logs/screen-n-api.txt",
    "logs/screen-q-svc.txt",
    "logs/syslog.txt",
]


def generate(root: Path, total: int, builds: int, gzip_share: float, seed: int) -> list[Path]:
    """``builds`` build log directories of ``total`` bytes (before gzip) in all."""
    rng = random.Random(seed)
    pool = line_pool(rng)
    average = sum(len(line) for line in pool) / len(pool)
    per_file = total / builds / len(FILES)
    directories = []
    for b in range(builds):
        directory = root / f"build-{b:04d}"
        for name in FILES:
            lines = max(1, int(per_file / average * rng.uniform(0.5, 1.5)))
            data = b"".join(rng.choices(pool, k=lines))
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if rng.random() < gzip_share:
                # devstack-gate's compressed logs keep their name plus .gz.
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, compresslevel=1))
            else:
                path.write_bytes(data)
        directories.append(directory)
    return directories


def scan_all(scanner: Scanner, directories: list[Path]) -> tuple[float, int, int]:
    """(seconds, bytes searched, distinct matching lines)."""
    started = time.perf_counter()
    searched = 0
    lines: set[tuple[Path, str, int]] = set()
    for directory in directories:
        result = scanner.scan(directory)
        searched += result.bytes
        lines.update((directory, m.file, m.line_number) for m in result.matches)
    return time.perf_counter() - started, searched, len(lines)


def grep_all(root: Path, patterns: Path) -> tuple[float, int]:
    """(seconds, matching lines) of grep -E -f over every file, zcat for the gzipped."""
    env = {**os.environ, "LC_ALL": "C"}
    plain = ["grep", "-r", "-E", "-c", "-h", "--exclude=*.gz", "-f", str(patterns), str(root)]
    zipped = sorted(str(p) for p in root.rglob("*.gz"))
    started = time.perf_counter()
    out = subprocess.run(plain, env=env, capture_output=True, text=True, check=False).stdout
    count = sum(int(n) for n in out.split())
    # Batches keep each command line short; zcat and grep run side by side.
    for i in range(0, len(zipped), 500):
        zcat = subprocess.Popen(["zcat", *zipped[i : i + 500]], stdout=subprocess.PIPE)
        grep = subprocess.run(
            ["grep", "-E", "-c", "-f", str(patterns)],
            stdin=zcat.stdout,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert zcat.stdout is not None
        zcat.stdout.close()
        zcat.wait()
        count += int(grep.stdout.strip() or 0)
    return time.perf_counter() - started, count


def peak_memory(scanner: Scanner, directories: list[Path]) -> int:
    tracemalloc.start()
    try:
        for directory in directories:
            scanner.scan(directory)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MB of logs (before gzip)")
    parser.add_argument("--builds", type=int, default=500)
    parser.add_argument("--signatures", type=int, default=200)
    parser.add_argument("--gzip-share", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side; best kept")
    args = parser.parse_args()
    console = Console()
    sigs = signatures(args.signatures)
    # No cap on matches per signature: both sides find every matching line,
    # and their counts must agree (the workers' default cap only saves time).
    scanner = Scanner(sigs, max_matches=10**9)
    with tempfile.TemporaryDirectory(prefix="failure-scan-") as tmp:
        root = Path(tmp)
        patterns = root / "patterns.txt"
        patterns.write_text("".join(p + "\n" for s in sigs for p in s.patterns))
        console.print(f"generating {args.size} MB of logs for {args.builds} builds...")
        t0 = time.perf_counter()
        big = generate(root / "big", args.size * MB, args.builds, args.gzip_share, args.seed)
        console.print(f"  {time.perf_counter() - t0:.1f}s")

        # Turn about, best of --repeat each: the machine's other load falls
        # on both sides alike, and the worker's scanner is warm in service
        # (it keeps its compiled signatures from build to build).
        grep_seconds = scan_seconds = float("inf")
        for _ in range(args.repeat):
            seconds, grep_lines = grep_all(root / "big", patterns)
            grep_seconds = min(grep_seconds, seconds)
            seconds, searched, found = scan_all(scanner, big)
            scan_seconds = min(scan_seconds, seconds)
        big_peak = peak_memory(scanner, big)
        shutil.rmtree(root / "big")

        small_size = max(1, args.size // 8)
        small = generate(root / "small", small_size * MB, args.builds, args.gzip_share, args.seed)
        small_peak = peak_memory(scanner, small)

    mb = searched / MB
    table = Table(title=f"{args.builds} failed builds, {mb:.0f} MB, {len(sigs)} signatures")
    for column in ("engine", "seconds", "MB/s", "matching lines", "ratio to grep"):
        table.add_column(column, justify="right")
    grep_rate = mb / grep_seconds
    scan_rate = mb / scan_seconds
    table.add_row(
        "grep -E -f (zcat)", f"{grep_seconds:.1f}", f"{grep_rate:.0f}", str(grep_lines), "1.00"
    )
    table.add_row(
        "gatekeeper scanner",
        f"{scan_seconds:.1f}",
        f"{scan_rate:.0f}",
        str(found),
        f"{scan_rate / grep_rate:.2f}",
    )
    console.print(table)
    if found != grep_lines:
        console.print(f"MISMATCH: the scanner found {found} matching lines, grep {grep_lines}")
    memory = Table(title="scanner peak memory (tracemalloc)")
    memory.add_column("logs")
    memory.add_column("peak", justify="right")
    memory.add_row(f"{args.size} MB", f"{big_peak / MB:.1f} MB")
    memory.add_row(f"{small_size} MB", f"{small_peak / MB:.1f} MB")
    console.print(memory)


if __name__ == "__main__":
    main()
