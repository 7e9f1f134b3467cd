"""Confining a job on this host with bubblewrap: the ``local`` provider's jail.

Inside, the node directory is the only writable place and appears at
:data:`NODE`; the system directories are bound read-only; ``/proc``,
``/dev`` and ``/tmp`` are fresh; nothing else of the host exists (not the
state directory, its keys, certificates and database, not the Gerrit key,
not other nodes, not the daemon's home). The job gets its own pid, IPC, UTS
and cgroup namespaces, and its own network namespace (loopback only) unless
the provider says ``network: true``.

The job never runs as the daemon's user. When the daemon is root, bubblewrap
runs privileged (without a user namespace, so no uid of the job maps to
root outside) and ``setpriv`` drops to the provider's ``job-uid``/``job-gid``
with no capabilities and no way to regain any before the command starts; the
node directory is handed to that uid first. Otherwise bubblewrap makes a
user namespace in which the daemon's uid is seen as ``job-uid``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.model.outside import shown

log = logging.getLogger(__name__)

#: Where the node directory is seen from inside the jail.
NODE = Path("/node")

# Bound read-only when they exist; a symlink (merged /usr) is recreated as one.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")


@dataclass(frozen=True)
class Jail:
    """How jobs on one local provider are confined; immutable, so shared by
    the provider and every worker thread's transport."""

    bwrap: str = "bwrap"
    network: bool = True
    uid: int = 65534
    gid: int = 65534

    def inside(self, node_root: Path, path: Path) -> Path:
        """``path`` (under ``node_root``) as the job sees it."""
        return NODE / path.relative_to(node_root)

    def argv(self, node_root: Path, cwd: Path, command: list[str]) -> list[str]:
        """The command line that runs ``command`` jailed in ``node_root``, in ``cwd``."""
        args = [self.bwrap, "--die-with-parent", "--new-session"]
        as_root = os.geteuid() == 0
        if as_root:
            # No user namespace: as root it would map the job's uid to root outside.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
            if not self.network:
                args.append("--unshare-net")
        else:
            args += ["--unshare-all", "--unshare-user", "--uid", str(self.uid)]
            args += ["--gid", str(self.gid)]
            if self.network:
                args.append("--share-net")
        for name in SYSTEM_DIRS:
            if os.path.islink(name):
                args += ["--symlink", os.readlink(name), name]
            elif os.path.isdir(name):
                args += ["--ro-bind", name, name]
        # /tmp as on any host: anyone may write, only the owner remove.
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        args += ["--bind", str(node_root), str(NODE), "--chdir", str(self.inside(node_root, cwd))]
        if as_root:
            setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
            args += [
                setpriv,
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        return [*args, *command]

    def hand_over(self, node_root: Path) -> None:
        """Give ``node_root`` to the job's uid, so the job can write in it
        (only needed when the daemon is root: the workspace was copied in as root).

        :raises OSError:
        """
        if os.geteuid() != 0:
            return
        os.lchown(node_root, self.uid, self.gid)
        for current, dirs, files in os.walk(node_root, followlinks=False):
            for name in dirs + files:
                os.lchown(os.path.join(current, name), self.uid, self.gid)

    def problem(self) -> str:
        """Why jobs cannot be confined here ("" when they can): runs the jail
        once, the way a job runs, and checks the uid inside."""
        with tempfile.TemporaryDirectory(prefix="gatekeeper-jail-") as tmp:
            root = Path(tmp)
            try:
                self.hand_over(root)
                done = subprocess.run(
                    self.argv(root, root, ["id", "-u"]),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=60,
                    check=False,
                )
            except FileNotFoundError:
                return f"bubblewrap not found at {shown(self.bwrap)}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"bubblewrap did not run: {shown(exc)}"
        if done.returncode != 0:
            return f"bubblewrap exited {done.returncode}: {shown(done.stderr.strip())}"
        if done.stdout.strip() != str(self.uid):
            return f"the job ran as uid {shown(done.stdout.strip())}, not {self.uid}"
        return ""
