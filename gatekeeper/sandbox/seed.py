"""The first commit of each of the eight projects of the original gate.

Small, but real enough to gate: nova carries a module and its unit tests,
and devstack-gate carries the wrapper the gate job runs
(``devstack-vm-gate-wrap.sh``), which here runs every project's own tests
in place of a full devstack (nothing in the sandbox can boot OpenStack).
"""

from __future__ import annotations

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

GATE_WRAP = r"""#!/usr/bin/env bash
# Sandbox devstack-gate: the real wrapper boots devstack and runs tempest;
# this one runs each project's own run_tests.sh from the prepared workspace,
# with the same inputs (the ZUUL_* environment and the git trees).
set -u
mkdir -p logs
echo "devstack-vm-gate-wrap: $ZUUL_PIPELINE $ZUUL_PROJECT change $ZUUL_CHANGE,$ZUUL_PATCHSET"
echo "changes under test: $ZUUL_CHANGES"
status=0
for tests in */*/run_tests.sh; do
    project=${tests%/run_tests.sh}
    screen="logs/screen-$(basename "$project").txt"
    echo "== $project"
    if (cd "$project" && bash ./run_tests.sh) >"$screen" 2>&1; then
        echo "   passed ($(wc -l <"$screen") lines in $screen)"
    else
        echo "   FAILED, see $screen:"
        tail -n 20 "$screen" | sed 's/^/   | /'
        status=1
    fi
done
date -u +"%FT%TZ gate finished with status $status" >> logs/syslog.txt
exit $status
"""

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
    if project == "openstack-infra/devstack-gate":
        files["devstack-vm-gate-wrap.sh"] = GATE_WRAP
    return files
