"""Nodes that are directories on this host: the zero-setup default.

``<root>/<node name>/`` is copied from the label's image directory
``<root>/../images/<label>/``, and the build runs in it through
``LocalTransport``. Image building is a later feature: a missing image
directory is created empty.
"""

from __future__ import annotations

import getpass
import logging
import re
import shutil
from pathlib import Path

from gatekeeper.config.site import ProviderConfig
from gatekeeper.db.tables import Node
from gatekeeper.errors import ProviderError
from gatekeeper.pool.providers.base import LaunchedNode, Provider
from gatekeeper.worker.transport import Transport
from gatekeeper.worker.transport_local import LocalTransport, make_writable_and_retry

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


class LocalProvider(Provider):
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

    def _node_dir(self, name: str) -> Path:
        if not _SAFE_NAME.match(name) or ".." in name:
            raise ProviderError(f"unsafe node name {name!r}")
        return self.root / name

    def launch(self, node_name: str, label: str) -> LaunchedNode:
        dest = self._node_dir(node_name)
        image = self.images / label
        if not _SAFE_NAME.match(label):
            raise ProviderError(f"unsafe label name {label!r}")
        try:
            image.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                raise ProviderError(f"node directory {dest} already exists")
            shutil.copytree(image, dest, symlinks=True)
        except OSError as exc:
            raise ProviderError(f"cannot create node {node_name} from {image}: {exc}") from exc
        log.debug("node %s copied from %s", node_name, image)
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

    def transport(self, node: Node) -> Transport:
        return LocalTransport(Path(node.external_id))
