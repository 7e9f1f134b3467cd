"""Nodes that are directories on this host: the zero-setup default.

``<root>/<node name>/`` is copied from the label's current image directory
(``<root>/../images/<image name>/``, made by ``build_image``) or, before the
first image exists, from the base directory ``<root>/../images/<label>/``
(created empty if missing), and the build runs in it through
``LocalTransport``. An image is made the way a cloud makes one: a template
directory is copied from the base, the label's setup scripts run in it, and
it is then copied ("snapshotted") to the image's directory.
"""

from __future__ import annotations

import builtins
import getpass
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.tables import Node
from gatekeeper.errors import ProviderError
from gatekeeper.kit import image_kit_program
from gatekeeper.model.node import LaunchedNode
from gatekeeper.model.outside import shown
from gatekeeper.node.confine import Jail
from gatekeeper.node.transport import Transport
from gatekeeper.node.transport_local import LocalTransport, make_writable_and_retry
from gatekeeper.pool.providers.base import BuildsImages, Progress, Provider, Reapable, Tagged

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


class LocalProvider(Provider, Reapable, BuildsImages):
    """Directory nodes under ``config.root``. Called from pool launcher
    threads (launch, delete) and worker threads (transport); it keeps no
    state of its own, so that is safe.
    """

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        if config.root is None:
            raise ProviderError(f"local provider {config.name} has no root directory")
        self.root = Path(config.root).expanduser().resolve()
        self.images = self.root.parent / "images"
        self.jail = Jail(config.bwrap, config.network, config.job_uid, config.job_gid)
        # Asked once: whether this host can run the jail at all.
        self.jail_problem = self.jail.problem()
        self.refusal = ""
        if not self.jail_problem:
            log.info("local provider %s: jobs run confined by bubblewrap", config.name)
        elif config.unconfined:
            log.warning(
                "local provider %s: jobs run UNCONFINED, as this user (unconfined: true): %s",
                config.name,
                self.jail_problem,
            )
        else:
            self.refusal = (
                f"local provider {config.name} cannot confine jobs ({self.jail_problem}); "
                "it runs none: install bubblewrap and allow user namespaces, or set "
                "'unconfined: true' on the provider if this host and its changes are trusted"
            )
            log.error("%s", self.refusal)

    def _node_dir(self, name: str) -> Path:
        if not _SAFE_NAME.match(name) or ".." in name:
            raise ProviderError(f"unsafe node name {name!r}")
        return self.root / name

    def launch(self, node_name: str, label: str, image: str = "") -> LaunchedNode:
        dest = self._node_dir(node_name)
        if not _SAFE_NAME.match(label):
            raise ProviderError(f"unsafe label name {label!r}")
        source = self._image_dir(image) if image else self.images / label
        try:
            if not image:
                source.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                raise ProviderError(f"node directory {dest} already exists")
            shutil.copytree(source, dest, symlinks=True)
        except OSError as exc:
            raise ProviderError(f"cannot create node {node_name} from {source}: {exc}") from exc
        log.debug("node %s copied from %s", node_name, source)
        return LaunchedNode(external_id=str(dest), address="localhost", username=getpass.getuser())

    def delete(self, node: Node) -> None:
        path = Path(node.external_id) if node.external_id else self._node_dir(node.name)
        path = path.resolve()
        if path.parent != self.root:
            # Never remove something that is not one of our node directories.
            raise ProviderError(f"node {node.name}: {path} is not under {self.root}")
        if not path.exists():
            return
        try:
            shutil.rmtree(path, onerror=make_writable_and_retry)
        except OSError as exc:
            raise ProviderError(f"cannot delete node {node.name} at {path}: {exc}") from exc

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(str(p) for p in self.root.iterdir() if p.is_dir() and not p.is_symlink())

    def exists(self, node: Node) -> bool:
        path = Path(node.external_id) if node.external_id else self._node_dir(node.name)
        return path.exists()

    def list_tagged(self) -> builtins.list[Tagged]:
        return [Tagged(external_id=p, node=Path(p).name) for p in self.list()]

    def delete_external(self, external_id: str) -> None:
        path = Path(external_id).resolve()
        if path.parent != self.root:
            raise ProviderError(f"{path} is not under {self.root}")
        shutil.rmtree(path, onerror=make_writable_and_retry)

    # -- images ------------------------------------------------------------

    def _image_dir(self, external_id: str) -> Path:
        path = Path(external_id).resolve()
        if path.parent != self.images.resolve() or not _SAFE_NAME.match(path.name):
            raise ProviderError(f"{external_id} is not an image directory under {self.images}")
        return path

    def builds_images(self, label: str) -> bool:
        # Without setup scripts an image would only copy the base: boot that.
        settings = self.config.image(label)
        return settings is not None and settings.builds

    def build_image(self, label: str, image_name: str, progress: Progress) -> str:
        settings = self.config.image(label)
        if settings is None:
            raise ProviderError(f"provider {self.name} has no 'images' entry for label {label}")
        if not _SAFE_NAME.match(label) or not _SAFE_NAME.match(image_name):
            raise ProviderError(f"unsafe image name {image_name!r}")
        base = self.images / label
        template = self.images / f".{image_name}.template"
        dest = self.images / image_name
        try:
            base.mkdir(parents=True, exist_ok=True)
            if template.exists():
                shutil.rmtree(template, onerror=make_writable_and_retry)
            progress(f"template {template.name} from {base}")
            shutil.copytree(base, template, symlinks=True)
            if settings.kit is not None:
                progress("running the devstack image kit")
                kit = settings.kit
                program = image_kit_program(kit.projects, kit.git_url, str(template))
                output = self._run_bash("the devstack image kit", ["bash", "-s"], template, program)
                for line in output.splitlines():
                    if line.startswith("image kit: "):
                        progress(shown(line, 1000))
            for script in settings.setup:
                progress(f"running {script.name}")
                self._run_setup(script, template)
            progress(f"snapshot to {dest}")
            shutil.copytree(template, dest, symlinks=True)
        except OSError as exc:
            raise ProviderError(f"image {image_name}: {exc}") from exc
        finally:
            if template.exists():
                shutil.rmtree(template, onerror=make_writable_and_retry)
        return str(dest)

    def _run_setup(self, script: Path, template: Path) -> None:
        self._run_bash(f"setup {script.name}", ["bash", str(script)], template)

    def _run_bash(
        self, name: str, argv: builtins.list[str], template: Path, program: bytes = b""
    ) -> str:
        """Run ``argv`` in ``template`` (``program`` on its stdin); its output.

        :raises ProviderError: it exited non-zero (the end of its output says why).
        """
        env = {**os.environ, "TEMPLATE": str(template)}
        done = subprocess.run(
            argv,
            cwd=template,
            env=env,
            input=program,
            capture_output=True,
            check=False,
        )
        stdout = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            output = (stdout + done.stderr.decode("utf-8", "replace")).strip()[-2000:]
            raise ProviderError(f"{name} exited {done.returncode}: {output}")
        return stdout

    def delete_image(self, external_id: str) -> None:
        path = self._image_dir(external_id)
        if path.exists():
            try:
                shutil.rmtree(path, onerror=make_writable_and_retry)
            except OSError as exc:
                raise ProviderError(f"cannot delete image {path}: {exc}") from exc

    def image_exists(self, external_id: str) -> bool:
        return self._image_dir(external_id).exists()

    def transport(self, node: Node) -> Transport:
        jail = None if self.jail_problem else self.jail
        return LocalTransport(Path(node.external_id), jail, refuse=self.refusal)
