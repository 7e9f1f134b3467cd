"""The devstack job kit's own cost, and what the image's git cache saves.

1. The kit's own time: the whole ``devstack-vm-gate-wrap.sh`` run on a
   local node directory (every phase, the exercises asked for), less the
   time its console gives to ``stack.sh`` and ``exercise.sh``. The baseline,
   measured in the same run, is the stand-in ``stack.sh`` run alone on the
   same tree (its services stopped again by ``unstack.sh``). Tempest is left
   out: its tox environment would dominate both.
2. The workspace phase (``dg_setup_workspace``) for the eight projects with
   the image's git cache beside without it, from the worker's prepared
   copies in the workspace (how gatekeeper runs it) and from ``ZUUL_URL``
   over ``file://`` (how ``reproduce.sh`` runs it: git's pack protocol, as
   over a network). The repositories and the cache are made here, each
   project with ``--commits`` commits over ``--files`` files (a hand-made
   cache, as the image kit would leave it).

The wrap runs as this user, unconfined, with ``DEVSTACK_GATE_SETUP_HOST=0``
(this machine is not a throw-away VM). Times are the median and the minimum
of ``--repeat`` interleaved runs.

    .venv/bin/python bench/devstack_kit.py [--repeat 5] [--commits 300] [--files 200]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gatekeeper.kit import DEVSTACK_GATE
from gatekeeper.sandbox.seed import PROJECTS, STANDIN_DEVSTACK

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
}
STEP = re.compile(r"^-- (stack\.sh|exercise\.sh): ok \((\d+\.\d+)s\)$", re.M)
PHASE = re.compile(r"^== (.+?): done \((\d+\.\d+)s\)$", re.M)


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, input=stdin, env={**os.environ, **GIT_ENV}, check=True)


def history(commits: int, files: int) -> bytes:
    """A git fast-import stream: ``files`` files, then ``commits`` commits
    each changing one of them."""
    out = []
    blob = "x" * 2000
    for n in range(commits):
        out.append(
            f"commit refs/heads/master\ncommitter bench <b@e> {1700000000 + n} +0000\n"
            f"data {len(f'commit {n}')}\ncommit {n}\n"
        )
        if n == 0:
            for f in range(files):
                body = f"{blob}{f}\n"
                out.append(f"M 644 inline src/file{f}.py\ndata {len(body)}\n{body}\n")
        body = f"{blob} change {n}\n"
        out.append(f"M 644 inline src/file{n % files}.py\ndata {len(body)}\n{body}\n")
    return "".join(out).encode()


def make_upstream(root: Path, commits: int, files: int) -> None:
    """Gerrit's repositories: the eight projects, devstack being the stand-in."""
    stream = history(commits, files)
    for project in PROJECTS:
        repo = root / project
        repo.mkdir(parents=True)
        git("init", "-q", "-b", "master", cwd=repo)
        git("fast-import", "--quiet", cwd=repo, stdin=stream)
        git("reset", "-q", "--hard", "master", cwd=repo)
        if project == "openstack-dev/devstack":
            shutil.copytree(STANDIN_DEVSTACK, repo, dirs_exist_ok=True)
            git("add", "-A", cwd=repo)
            git("commit", "-q", "-m", "the stand-in devstack", cwd=repo)


def make_node(base: Path, upstream: Path, cache: bool) -> Path:
    """A local node directory as the worker leaves it: the workspace with
    every project and the kit, and the image's git cache when ``cache``."""
    node = base / f"node-{time.monotonic_ns()}"
    workspace = node / "workspace"
    for project in PROJECTS:
        git("clone", "-q", str(upstream / project), str(workspace / project))
        if cache:
            git("clone", "-q", "--bare", str(upstream / project), str(node / "opt/git" / project))
    shutil.copytree(DEVSTACK_GATE, workspace / ".gatekeeper" / "kit" / DEVSTACK_GATE.name)
    return node


def node_env(node: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(node),
        "WORKSPACE": str(node / "workspace"),
        "GATEKEEPER_GIT_CACHE": str(node / "opt" / "git"),
        "ZUUL_PROJECT": "openstack/nova",
        "ZUUL_BRANCH": "master",
        "ZUUL_PIPELINE": "check",
        "ZUUL_REF": "refs/heads/master",
        "BUILD_TIMEOUT": "600000",
        "DEVSTACK_GATE_SETUP_HOST": "0",
        "DEVSTACK_GATE_EXERCISES": "1",
        # The made-up nova has no flavors for that exercise to read.
        "SKIP_EXERCISES": "boot_from_volume,bundle,client-env,euca,flavors",
        **GIT_ENV,
        **(extra or {}),
    }


def run_wrap(node: Path, phases: dict[str, list[float]]) -> tuple[float, float]:
    """(the wrap's wall time, the time its console gives stack.sh and
    exercise.sh); each phase's time as its console footer gives it is
    added to ``phases``."""
    wrap = node / "workspace" / ".gatekeeper/kit/devstack-gate/devstack-vm-gate-wrap.sh"
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", str(wrap)],
        cwd=node / "workspace",
        env=node_env(node),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the wrap failed ({done.returncode}):\n{done.stdout[-3000:]}")
    for match in PHASE.finditer(done.stdout):
        phases.setdefault(match.group(1), []).append(float(match.group(2)))
    steps = sum(float(m.group(2)) for m in STEP.finditer(done.stdout))
    return wall, steps


def run_stack_alone(node: Path) -> float:
    """The stand-in stack.sh alone, on the tree the wrap left (local.conf
    included), then unstack.sh outside the timing."""
    devstack = node / "opt" / "stack" / "new" / "devstack"
    env = node_env(node, {"ETC_DIR": str(node / "opt" / "stack" / "etc")})
    start = time.perf_counter()
    subprocess.run(["bash", "stack.sh"], cwd=devstack, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    subprocess.run(["bash", "unstack.sh"], cwd=devstack, env=env, check=True, capture_output=True)
    return elapsed


def setup_workspace(node: Path, source: str) -> float:
    """``dg_setup_workspace`` alone: from the workspace copies, or from ZUUL_URL."""
    extra = {"DEVSTACK_GATE_PROJECTS_OVERRIDE": " ".join(PROJECTS)}
    if source != "workspace":
        extra["ZUUL_URL"] = source
        extra["WORKSPACE"] = str(node / "empty")
        (node / "empty").mkdir(exist_ok=True)
    script = f"source {DEVSTACK_GATE / 'functions.sh'}; BASE={node}/opt/stack dg_setup_workspace"
    start = time.perf_counter()
    subprocess.run(
        ["bash", "-c", script], env=node_env(node, extra), check=True, capture_output=True
    )
    return time.perf_counter() - start


def row(name: str, base: list[float], measured: list[float]) -> tuple[str, ...]:
    return (
        name,
        f"{statistics.median(base):.2f}",
        f"{statistics.median(measured):.2f}",
        f"{min(measured):.2f}",
        f"{statistics.median(measured) / statistics.median(base):.2f}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--commits", type=int, default=300, help="commits per project")
    parser.add_argument("--files", type=int, default=200, help="files per project")
    args = parser.parse_args()
    out = Console()
    with tempfile.TemporaryDirectory(prefix="bench-kit-") as tmp:
        root = Path(tmp)
        out.print(f"making 8 projects of {args.commits} commits over {args.files} files ...")
        make_upstream(root / "gerrit", args.commits, args.files)
        url = f"file://{root / 'gerrit'}"
        kit: list[float] = []
        stack_alone: list[float] = []
        times: dict[tuple[str, bool], list[float]] = {}
        phases: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            node = make_node(root, root / "gerrit", cache=True)
            wall, steps = run_wrap(node, phases)
            kit.append(wall - steps)
            stack_alone.append(run_stack_alone(node))
            shutil.rmtree(node, ignore_errors=True)
            for cache in (False, True):  # interleaved, so drift hits both alike
                for source in ("workspace", url):
                    node = make_node(root, root / "gerrit", cache=cache)
                    key = (source, cache)
                    times.setdefault(key, []).append(setup_workspace(node, source))
                    shutil.rmtree(node, ignore_errors=True)

    table = Table(
        title=f"devstack job kit on a local node, {args.repeat} runs each",
        caption="seconds; ratio: median / baseline median. The kit's own time is the wrap's "
        "wall time less its stack.sh and exercise.sh steps (stand-in devstack, no tempest).",
    )
    for column in ("measure", "baseline", "median", "min", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row(*row("kit's own time vs stack.sh alone", stack_alone, kit))
    table.add_row(
        *row(
            "setup workspace from the workspace: cache vs none",
            times[("workspace", False)],
            times[("workspace", True)],
        )
    )
    table.add_row(
        *row(
            "setup workspace from ZUUL_URL: cache vs none", times[(url, False)], times[(url, True)]
        )
    )
    out.print(table)
    breakdown = Table(title="where the wrap's time goes (its console's footers)")
    breakdown.add_column("phase")
    breakdown.add_column("median s", justify="right")
    for phase, seconds in phases.items():
        breakdown.add_row(phase, f"{statistics.median(seconds):.2f}")
    out.print(breakdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
