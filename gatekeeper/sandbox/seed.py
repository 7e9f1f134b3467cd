"""The first commit of each of the eight projects of the original gate.

Small, but real enough to gate: nova carries a module and its unit tests,
and devstack carries the stand-in devstack (``seed/devstack/``: devstack's
interface, none of OpenStack, which nothing here could boot) that the job
kit's wrap (:mod:`gatekeeper.kit`, shipped with every workspace) runs.
"""

from __future__ import annotations

from pathlib import Path

#: The stand-in devstack tree: openstack-dev/devstack's first commit in the
#: sandbox, and what tests (tests/fixtures/devstack.py) run the kit against.
STANDIN_DEVSTACK = Path(__file__).resolve().parent / "seed" / "devstack"

PROJECTS = [
    "openstack/nova",
    "openstack/glance",
    "openstack/keystone",
    "openstack/horizon",
    "openstack/python-novaclient",
    "openstack/python-keystoneclient",
    "openstack-dev/devstack",
    "openstack-infra/devstack-gate",
]

NOVA_INIT = '''"""Nova (sandbox): the arithmetic of flavors."""


def vcpus_for(flavor: str) -> int:
    sizes = {"m1.tiny": 1, "m1.small": 1, "m1.medium": 2, "m1.large": 4}
    return sizes[flavor]
'''

NOVA_TEST = """import unittest

from nova import vcpus_for


class TestFlavors(unittest.TestCase):
    def test_tiny(self):
        self.assertEqual(vcpus_for("m1.tiny"), 1)

    def test_large(self):
        self.assertEqual(vcpus_for("m1.large"), 4)


if __name__ == "__main__":
    unittest.main()
"""

PY_TESTS = "#!/usr/bin/env bash\nset -e\npython3 -m unittest discover -v -s tests -t .\n"


def _generic(name: str) -> dict[str, str | bytes]:
    short = name.split("/")[-1]
    return {
        "README.rst": f"{short}\n{'=' * len(short)}\n\nPart of the gatekeeper sandbox.\n",
        "run_tests.sh": f"#!/usr/bin/env bash\nset -e\necho '{short}: syntax check'\n"
        "for f in $(git ls-files '*.sh'); do bash -n \"$f\"; done\necho ok\n",
    }


def seed_files(project: str) -> dict[str, str | bytes]:
    files = _generic(project)
    if project == "openstack/nova":
        files.update(
            {
                "nova/__init__.py": NOVA_INIT,
                "tests/__init__.py": "",
                "tests/test_flavors.py": NOVA_TEST,
                "run_tests.sh": PY_TESTS,
            }
        )
    if project == "openstack-dev/devstack":
        files.update(standin_devstack())
    return files


def standin_devstack() -> dict[str, str | bytes]:
    """The stand-in devstack's files, by path in the repository."""
    return {
        str(path.relative_to(STANDIN_DEVSTACK)): path.read_bytes()
        for path in sorted(STANDIN_DEVSTACK.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and ".tox" not in path.parts
    }
