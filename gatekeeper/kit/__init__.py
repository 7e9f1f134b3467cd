"""The job kit gatekeeper ships and puts on nodes.

``devstack-gate/``: the node side of devstack-gate (the wrap script and its
phases, the ``local.conf`` generator, ``reproduce.sh``), copied to the node
with the workspace and run by the default layout's devstack job.
``image/``: the setup scripts of the pool's daily devstack image.

These are bash, run on the node; nothing here imports the rest of gatekeeper.
"""

from __future__ import annotations

import shlex
from pathlib import Path

__all__ = ["DEVSTACK_GATE", "IMAGE", "IMAGE_KIT", "KIT_ROOT", "image_kit_program"]

KIT_ROOT = Path(__file__).resolve().parent
DEVSTACK_GATE = KIT_ROOT / "devstack-gate"
IMAGE = KIT_ROOT / "image"
#: The image kit's one program (see its header for what it lays out).
IMAGE_KIT = IMAGE / "devstack-image.sh"


def image_kit_program(projects: list[str], git_url: str, root: str) -> bytes:
    """The image kit as one bash program for ``bash -s``: its settings, then
    the script. One stream, so it runs the same over SSH on a build server
    (nothing to copy first) and in a local image's template directory.

    ``root`` is where the image's tree is: ``/`` on a server, the template
    directory of a local image.

    :raises OSError: the kit is missing from the installed package.
    """
    settings = {
        "GATEKEEPER_IMAGE_ROOT": root,
        "GATEKEEPER_IMAGE_GIT_URL": git_url,
        "GATEKEEPER_IMAGE_PROJECTS": " ".join(projects),
    }
    header = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
    return header.encode() + IMAGE_KIT.read_bytes()
