"""The pool with ``openstack`` providers against the in-process fake cloud
(the only fake: it stands behind the calls the driver makes on openstacksdk,
chosen by each provider's ``cloud:``), real SQLite, and the real sshd
fixture answering for every booted server. (The node table's behaviour on
PostgreSQL is covered by test_pool.py and test_pool_claims.py; here the
cloud is the subject, so one database keeps the suite fast.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from sqlalchemy import update

from gatekeeper.config.site import LabelConfig, ProviderConfig, SiteConfig
from gatekeeper.db.engine import Database
from gatekeeper.db.images import ImageStore
from gatekeeper.db.nodes import NodeStore
from gatekeeper.db.tables import Node
from gatekeeper.model.node import ImageState, NodeState
from gatekeeper.pool.pool import Pool
from gatekeeper.pool.providers import make_provider
from gatekeeper.pool.providers.cloud import CloudError, unregister_cloud
from gatekeeper.pool.providers.openstack import (
    META_LABEL,
    META_NODE,
    META_POOL,
    META_PROVIDER,
)
from tests.fixtures.fake_cloud import FakeCloud, registered
from tests.fixtures.image_kit import KIT_PROJECTS, kit_upstream
from tests.fixtures.remote_cloud import serve
from tests.fixtures.sshd import SSHServer

pytestmark = pytest.mark.sshd

ROOT = Path(__file__).resolve().parents[2]

MakePool = Callable[..., Pool]


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    return sqlite_db


@pytest.fixture
def clouds() -> Iterator[Callable[..., FakeCloud]]:
    made: list[FakeCloud] = []

    def make(**knobs: Any) -> FakeCloud:
        cloud = registered(FakeCloud(**knobs))
        made.append(cloud)
        return cloud

    yield make
    for cloud in made:
        unregister_cloud(cloud.name)


def provider_config(
    name: str, cloud: str, sshd: SSHServer, root: Path, **extra: Any
) -> ProviderConfig:
    image = {
        "label": "trusty",
        "base-image": "ubuntu-trusty",
        "username": sshd.username,
        "private-key": str(sshd.private_key),
        **extra.pop("image", {}),
    }
    return ProviderConfig.model_validate(
        {
            "name": name,
            "driver": "openstack",
            "cloud": cloud,
            "rate": 0,
            "poll-interval": 0.02,
            "boot-timeout": 15,
            "ssh-port": sshd.port,
            "max-servers": 10,
            "root": str(root / name),
            "images": [image],
            **extra,
        }
    )


@pytest.fixture
def make_pool(tmp_path: Path, db: Database, sshd: SSHServer) -> Iterator[MakePool]:
    pools: list[Pool] = []

    def make(
        providers: list[tuple[str, FakeCloud | str, dict[str, Any]]],
        min_ready: int = 1,
        **site: Any,
    ) -> Pool:
        configs = [
            provider_config(
                name, c if isinstance(c, str) else c.name, sshd, tmp_path / "providers", **extra
            )
            for name, c, extra in providers
        ]
        label = LabelConfig.model_validate({"name": "trusty", "min-ready": min_ready})
        config = SiteConfig.model_validate(
            {
                "providers": [c.model_dump(by_alias=True) for c in configs],
                "labels": [label.model_dump(by_alias=True)],
                **site,
            }
        )
        pool = Pool(
            config,
            db,
            {c.name: make_provider(c, config.pool.name) for c in config.providers},
            config.labels,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


def _round(pool: Pool) -> None:
    pool.run_once()
    assert pool.wait_for_launches(timeout=60)


def _rounds_until(pool: Pool, done: Callable[[], bool], rounds: int = 40) -> None:
    for _ in range(rounds):
        _round(pool)
        if done():
            return
    raise AssertionError("the pool did not get there")


def _states(db: Database) -> list[str]:
    return sorted(n.state for n in NodeStore(db).list())


def test_launch_tags_servers_and_waits_for_ssh(
    db: Database, sshd: SSHServer, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds(boot_delay=0.05)
    pool = make_pool([("rax", cloud, {})], min_ready=2)
    _round(pool)
    nodes = NodeStore(db).list()
    assert [n.state for n in nodes] == [NodeState.READY] * 2
    servers = {s.id: s for s in cloud.servers()}
    assert set(servers) == {n.external_id for n in nodes}
    host_key = paramiko.HostKeys(str(sshd.known_hosts)).lookup(f"[127.0.0.1]:{sshd.port}")
    assert host_key is not None
    key = next(iter(host_key.values()))
    for node in nodes:
        assert servers[node.external_id].metadata == {
            META_POOL: "gatekeeper",
            META_PROVIDER: "rax",
            META_NODE: node.name,
            META_LABEL: "trusty",
        }
        assert (node.address, node.port, node.username) == ("127.0.0.1", sshd.port, sshd.username)
        assert node.host_keys == f"[127.0.0.1]:{sshd.port} {key.get_name()} {key.get_base64()}"


def test_a_node_records_the_region_and_zone_the_cloud_placed_it_in(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    # What per-provider failure statistics and the job's NODE_REGION/NODE_AZ read.
    cloud = clouds(availability_zone="az-east-2")
    pool = make_pool([("rax", cloud, {"region": "RegionTwo"})])
    _round(pool)
    (node,) = NodeStore(db).list()
    assert (node.state, node.region, node.availability_zone) == (
        NodeState.READY,
        "RegionTwo",
        "az-east-2",
    )


def test_a_node_is_usable_over_ssh_with_the_recorded_host_key(
    tmp_path: Path, db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    pool = make_pool([("rax", clouds(), {})])
    _round(pool)
    node = NodeStore(db).claim("trusty", "w", "b")
    assert node is not None
    transport = pool.providers["rax"].transport(node)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "hello").write_text("hi")
    lines: list[str] = []

    transport.push(tmp_path / "ws", "workspace")
    status = transport.run("cat workspace/hello", {}, ".", lines.append, 30, threading.Event())
    assert (status, lines) == (0, ["hi"])


@pytest.mark.parametrize(
    "knob",
    ["error_next_boots", "hang_next_boots", "unreachable_next_boots"],
    ids=["error", "never-active", "no-ssh"],
)
def test_a_failed_attempt_is_deleted_and_retried(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool, knob: str
) -> None:
    cloud = clouds(**{knob: 1})
    pool = make_pool([("rax", cloud, {"boot-timeout": 3, "launch-retries": 2})])
    _round(pool)
    nodes = NodeStore(db).list()
    assert [n.state for n in nodes] == [NodeState.READY]
    assert cloud.created == 2
    assert [s.id for s in cloud.servers()] == [nodes[0].external_id]


def test_a_burst_of_launches_looks_the_image_and_flavor_up_once(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    # Every launch thread starts with an empty id cache; under a rate limit
    # each lookup it made would cost a slot the creates need.
    cloud = clouds()
    pool = make_pool([("rax", cloud, {"rate": 20})], min_ready=6)
    _round(pool)
    assert _states(db) == [NodeState.READY] * 6
    assert (cloud.calls["find_image"], cloud.calls["find_flavor"]) == (1, 1)
    assert cloud.calls["create_server"] == 6


class SlowFailingImageLookup(FakeCloud):
    """A cloud whose image service answers a lookup after half a second, with an error."""

    def find_image(self, name_or_id: str) -> str:
        threading.Event().wait(0.5)
        super().find_image(name_or_id)
        raise CloudError(f"find image {name_or_id}: 503 Service Unavailable")


def test_a_failing_lookup_fails_the_launches_waiting_for_it_together(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    # Six launches wait on one lookup; its error is theirs, not six lookups
    # in a row (which, under a rate limit and an API timeout, would keep a
    # stopping pool waiting for minutes).
    cloud = registered(SlowFailingImageLookup())
    try:
        pool = make_pool([("rax", cloud, {"rate": 20})], min_ready=6)
        _round(pool)
        assert cloud.calls["find_image"] == 1
        assert cloud.calls.get("create_server", 0) == 0
        assert pool.health["rax"].failed == 6
    finally:
        unregister_cloud(cloud.name)


def test_a_launch_that_keeps_failing_leaves_nothing_and_backs_off(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds(fail_boots=True)
    pool = make_pool([("rax", cloud, {"launch-retries": 2})], min_ready=2)
    _round(pool)
    _round(pool)
    assert NodeStore(db).list() == []
    assert cloud.servers() == []
    # Two failed launches in a row: no more launches there for a while.
    created = cloud.created
    _round(pool)
    assert cloud.created == created
    assert pool.capacity(pool.providers["rax"]) == 0


def test_cloud_quota_limits_launches(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds(max_instances=3)
    cloud.add_foreign_server("someone-elses", {})
    pool = make_pool([("rax", cloud, {})], min_ready=5)
    _round(pool)
    _round(pool)
    assert _states(db) == [NodeState.READY] * 2
    assert len(cloud.servers()) == 3


def test_min_ready_is_met_when_one_provider_fails_one_is_full_and_one_is_slow(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    broken = clouds(fail_boots=True)
    full = clouds(max_instances=2)
    slow = clouds(boot_delay=0.3)
    pool = make_pool(
        [
            ("broken", broken, {"launch-retries": 1}),
            ("full", full, {}),
            ("slow", slow, {}),
        ],
        min_ready=8,
    )
    _rounds_until(pool, lambda: _states(db) == [NodeState.READY] * 8)
    nodes = NodeStore(db).list()
    by_provider = {p: sum(1 for n in nodes if n.provider == p) for p in ("broken", "full", "slow")}
    assert by_provider["broken"] == 0 and 1 <= by_provider["full"] <= 2
    assert pool.health["broken"].failed >= 2 and pool.capacity(pool.providers["broken"]) == 0
    pool.reaper.run_once()
    _round(pool)
    # Nothing leaked: every server in every cloud is a READY node's.
    assert broken.servers() == []
    assert {s.id for s in full.servers() + slow.servers()} == {n.external_id for n in nodes}


def test_a_label_the_cloud_has_no_image_for_is_not_launched_there(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    # A layout's job names a label this provider has no 'images' entry for:
    # launching it there would fail and back off the provider for trusty too.
    cloud = clouds()
    pool = make_pool([("rax", cloud, {})], min_ready=2)
    pool.labels.append(LabelConfig.model_validate({"name": "devstack-vm", "min-ready": 1}))
    _round(pool)
    _round(pool)
    assert _states(db) == [NodeState.READY] * 2
    assert (pool.health["rax"].failed, cloud.created) == (0, 2)
    assert pool.capacity(pool.providers["rax"]) == 8


def test_api_errors_do_not_lose_servers(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds()
    pool = make_pool([("rax", cloud, {})], min_ready=3)
    cloud.api_errors = 4
    _rounds_until(pool, lambda: _states(db) == [NodeState.READY] * 3)
    pool.reaper.run_once()
    _round(pool)
    assert {s.id for s in cloud.servers()} == {n.external_id for n in NodeStore(db).list()}


def test_delete_is_trusted_only_when_the_server_is_gone(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds()
    pool = make_pool([("rax", cloud, {})], min_ready=0, reap={"delete-retry": "10m"})
    nodes = NodeStore(db)
    nodes.request("trusty", "w", "b")
    _round(pool)
    node = nodes.claim("trusty", "w", "b")
    assert node is not None
    nodes.cancel_request(1)
    cloud.lost_deletes = 1
    nodes.release(node.name, hold=False, hold_seconds=0)
    pool.run_once()
    # The delete was accepted and did nothing: the row stays, DELETING.
    assert _states(db) == [NodeState.DELETING]
    assert [s.id for s in cloud.servers()] == [node.external_id]
    pool.run_once()
    assert _states(db) == [NodeState.DELETING]
    # Ten minutes on, the delete is sent again, and this time it works.
    with db.session() as session:
        session.execute(update(Node).values(state_time=Node.state_time - 601))
    pool.run_once()
    assert _states(db) == []
    assert cloud.servers() == []


def test_slow_deletes_keep_counting_against_max_servers(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds(delete_delay=3600)
    pool = make_pool([("rax", cloud, {"max-servers": 1})], min_ready=1)
    _round(pool)
    nodes = NodeStore(db)
    node = nodes.claim("trusty", "w", "b")
    assert node is not None
    nodes.release(node.name, hold=False, hold_seconds=0)
    _round(pool)
    assert _states(db) == [NodeState.DELETING]
    assert cloud.created == 1
    cloud.delete_delay = 0
    _round(pool)
    _round(pool)
    assert _states(db) == [NodeState.READY]


def test_reaper_deletes_leaks_and_forgets_rows_whose_server_is_gone(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds()
    pool = make_pool([("rax", cloud, {})], min_ready=2)
    _round(pool)
    kept, lost = NodeStore(db).list()
    leak = cloud.add_foreign_server(
        "trusty-rax-leak",
        {META_POOL: "gatekeeper", META_PROVIDER: "rax", META_NODE: "trusty-rax-leak"},
    )
    other_pool = cloud.add_foreign_server(
        "theirs", {META_POOL: "another-pool", META_PROVIDER: "rax", META_NODE: "theirs"}
    )
    untagged = cloud.add_foreign_server("a-users-vm", {})
    cloud.delete_server(lost.external_id)

    done = pool.reaper.run_once()
    assert (done["leaked"], done["gone"]) == (1, 1)
    _round(pool)
    _round(pool)
    ids = {s.id for s in cloud.servers()}
    assert leak not in ids and {other_pool, untagged, kept.external_id} <= ids
    states = {n.name: n.state for n in NodeStore(db).list()}
    assert lost.name not in states
    assert list(states.values()) == [NodeState.READY] * 2


def test_old_ready_nodes_are_replaced(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds()
    pool = make_pool([("rax", cloud, {})], min_ready=1, reap={"max-ready-age": "1h"})
    _round(pool)
    (old,) = NodeStore(db).list()
    assert pool.reaper.run_once(now=old.state_time + 3599)["old-ready"] == 0
    assert pool.reaper.run_once(now=old.state_time + 3601)["old-ready"] == 1
    _round(pool)
    (new,) = NodeStore(db).list()
    assert new.name != old.name and new.state == NodeState.READY
    assert [s.id for s in cloud.servers()] == [new.external_id]


@pytest.mark.parametrize(
    ("reap", "reaped_after"),
    [({}, 3600), ({"max-building-age": "10m"}, 600)],
    ids=["launch-timeout", "max-building-age"],
)
def test_a_node_stuck_building_is_reaped_with_its_server(
    db: Database,
    clouds: Callable[..., FakeCloud],
    make_pool: MakePool,
    reap: dict[str, str],
    reaped_after: float,
) -> None:
    # Another pool process started this launch and went silent: its row is
    # BUILDING and its server, tagged with the node's name, is in the cloud.
    cloud = clouds()
    pool = make_pool([("rax", cloud, {"launch-timeout": "1h"})], min_ready=0, reap=reap)
    stuck = NodeStore(db).add("trusty-rax-stuck", "trusty", "rax")
    server = cloud.add_foreign_server(
        stuck.name,
        {META_POOL: "gatekeeper", META_PROVIDER: "rax", META_NODE: stuck.name},
    )
    assert pool.reaper.run_once(now=stuck.created_at + reaped_after - 1)["stuck-building"] == 0
    assert pool.reaper.run_once(now=stuck.created_at + reaped_after + 1)["stuck-building"] == 1
    _rounds_until(pool, lambda: NodeStore(db).list() == [])
    assert server not in {s.id for s in cloud.servers()}


def test_kill_9_of_the_pool_mid_launch_leaves_no_server_and_no_stuck_row(
    tmp_path: Path, sshd: SSHServer, clouds: Callable[..., FakeCloud]
) -> None:
    # The real ``gatekeeper pool`` in a process of its own, SIGKILLed while
    # three servers it made are booting; the cloud lives on in this process.
    cloud = clouds(hang_next_boots=3)
    config = provider_config("rax", cloud.name, sshd, tmp_path / "providers")
    site_file = tmp_path / "gatekeeper.yaml"
    (tmp_path / "layout.yaml").write_text("pipelines: []\n")
    site_file.write_text(
        yaml.safe_dump(
            {
                "state-dir": str(tmp_path / "state"),
                "layout": str(tmp_path / "layout.yaml"),
                "providers": [
                    {**config.model_dump(by_alias=True, mode="json"), "boot-timeout": 3600}
                ],
                "labels": [{"name": "trusty", "min-ready": 3}],
                "pool": {"interval": 0.2},
            }
        )
    )
    db = Database(f"sqlite:///{tmp_path / 'state' / 'gatekeeper.db'}")
    with serve(cloud) as served:

        def pool_process(log_name: str) -> subprocess.Popen[bytes]:
            with open(tmp_path / log_name, "wb") as log_file:
                command = ["-v", "pool", "-c", str(site_file)]
                return subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.fixtures.remote_cloud",
                        served.address,
                        cloud.name,
                        *command,
                    ],
                    cwd=ROOT,
                    env=served.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )

        first = pool_process("first.log")
        try:
            _wait(lambda: len(cloud.servers()) == 3 and _states(db) == [NodeState.BUILDING] * 3)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        orphans = {s.id for s in cloud.servers()}

        second = pool_process("second.log")
        try:
            _wait(
                lambda: (
                    _states(db) == [NodeState.READY] * 3
                    and {s.id for s in cloud.servers()}
                    == {n.external_id for n in NodeStore(db).list()}
                )
            )
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                stopped = second.wait(timeout=60)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
                raise
        assert stopped == 0, (tmp_path / "second.log").read_text()
    log = (tmp_path / "second.log").read_text()
    assert log.count("was BUILDING at start-up: DELETE") == 3, log
    # Three the killed pool made, three (or, after a retry, more) the new one did.
    assert cloud.created >= 6
    assert not orphans & {s.id for s in cloud.servers()}
    assert _states(db) == [NodeState.READY] * 3
    db.dispose()


def _wait(done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        pause.wait(0.02)


def test_images_are_built_kept_two_deep_and_used_for_launches(
    tmp_path: Path, db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    marker = tmp_path / f"setup-ran-{uuid.uuid4().hex}"
    script = tmp_path / "setup.sh"
    script.write_text(f"set -e\necho cached >> {marker}\n")
    cloud = clouds(snapshot_delay=0.1)
    pool = make_pool([("rax", cloud, {"image": {"setup": [str(script)]}})], min_ready=0)
    store = ImageStore(db)
    names = []
    for _ in range(3):
        image = pool.builder.build(pool.providers["rax"], "trusty")
        assert image.state == ImageState.READY, image.comment
        names.append(image.name)
    assert marker.read_text() == "cached\n" * 3
    # Every template server was deleted.
    assert cloud.servers() == []
    states = {i.name: i.state for i in store.list()}
    assert states == {
        names[0]: ImageState.DELETE,
        names[1]: ImageState.READY,
        names[2]: ImageState.READY,
    }
    pool.reaper.run_once()
    assert [i.name for i in store.list()] == names[1:]
    assert {i.name for i in cloud.images()} == set(names[1:])
    # New nodes boot from the current image.
    current = store.current("rax", "trusty")
    assert current is not None and current.name == names[2]
    nodes = NodeStore(db)
    nodes.request("trusty", "w", "b")
    _round(pool)
    (node,) = nodes.list()
    assert node.image == current.name
    assert cloud._servers[node.external_id].image == current.external_id


def test_the_devstack_image_kit_runs_on_the_build_server_before_the_snapshot(
    tmp_path: Path,
    db: Database,
    clouds: Callable[..., FakeCloud],
    make_pool: MakePool,
) -> None:
    # The build server is the real sshd on this host (the fake cloud's
    # servers all answer there), so the kit lays its tree out in a directory
    # of its own ('root'), as it would on a server at /: a server at / would
    # be this host, which the kit would then change (packages, a user).
    upstream = kit_upstream(tmp_path / "upstream")
    # Not nova: its requirements would need the server's own pip mirror.
    projects = [p for p in KIT_PROJECTS if p != "openstack/nova"]
    tree = tmp_path / "server-root"
    kit = {"git-url": upstream.git_url, "projects": projects, "root": str(tree)}
    cloud = clouds()
    pool = make_pool([("rax", cloud, {"image": {"kit": kit}})], min_ready=0)
    said: list[str] = []
    image = pool.builder.build(pool.providers["rax"], "trusty", said.append)
    assert image.state == ImageState.READY, image.comment
    assert said.index("running the devstack image kit") < said.index("snapshotting")
    for project in projects:
        head = upstream.sim.branch_head(project)
        assert f"image kit: cached {project} at {head[:7]} (master)" in said
        cached = subprocess.run(
            ["git", "-C", str(tree / "opt" / "git" / project), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert cached.stdout.strip() == head
    assert (tree / "opt" / "cache" / "packages.txt").is_file()
    assert {i.name for i in cloud.images()} == {image.name}
    assert cloud.servers() == []


def test_a_failed_image_build_keeps_the_current_image(
    tmp_path: Path, db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    script = tmp_path / "setup.sh"
    script.write_text("exit 0\n")
    cloud = clouds()
    pool = make_pool([("rax", cloud, {"image": {"setup": [str(script)]}})], min_ready=0)
    good = pool.builder.build(pool.providers["rax"], "trusty")
    assert good.state == ImageState.READY
    script.write_text("echo no mirror reachable >&2\nexit 3\n")
    bad = pool.builder.build(pool.providers["rax"], "trusty")
    assert bad.state == ImageState.FAILED
    assert "exited 3" in bad.comment and "no mirror reachable" in bad.comment
    current = ImageStore(db).current("rax", "trusty")
    assert current is not None and current.name == good.name
    assert cloud.servers() == []


def test_a_quota_refusal_backs_the_provider_off_at_once(
    db: Database, clouds: Callable[..., FakeCloud], make_pool: MakePool
) -> None:
    cloud = clouds(max_instances=4)
    pool = make_pool([("rax", cloud, {})], min_ready=1)
    _round(pool)
    assert _states(db) == [NodeState.READY]
    # Someone else fills the project's quota after the pool last asked.
    for i in range(3):
        cloud.add_foreign_server(f"theirs-{i}", {})
    nodes = NodeStore(db)
    nodes.request("trusty", "w", "b")
    _round(pool)
    _round(pool)
    assert _states(db) == [NodeState.READY]
    assert pool.health["rax"].failed == 1
    assert pool.capacity(pool.providers["rax"]) == 0
    assert len(cloud.servers()) == 4
