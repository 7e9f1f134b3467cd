"""The job kit gatekeeper ships and puts on nodes.

``devstack-gate/``: the node side of devstack-gate (the wrap script and its
phases, the ``local.conf`` generator, ``reproduce.sh``), copied to the node
with the workspace and run by the default layout's devstack job.
``image/``: the setup scripts of the pool's daily devstack image.

These are bash, run on the node; nothing here imports the rest of gatekeeper.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEVSTACK_GATE", "IMAGE", "KIT_ROOT"]

KIT_ROOT = Path(__file__).resolve().parent
DEVSTACK_GATE = KIT_ROOT / "devstack-gate"
IMAGE = KIT_ROOT / "image"
