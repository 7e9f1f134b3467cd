"""The openstacksdk adapter on the HTTP level: openstacksdk's real client code
against ``requests-mock`` (the network is the one thing mocked), with the
service catalog from openstacksdk's own ``ConnectionFixture``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openstack
import pytest
import requests_mock
from openstack.fixture.connection import ConnectionFixture

from gatekeeper.pool.providers.cloud import CloudError, QuotaError, SDKCloud

COMPUTE = "https://compute.example.com/v2.1"
IMAGE = "https://image.example.com/v2"


@pytest.fixture
def http() -> Iterator[tuple[requests_mock.Mocker, SDKCloud]]:
    catalog = ConnectionFixture()
    with requests_mock.Mocker() as mock:
        mock.get(
            "https://identity.example.com/",
            json={
                "versions": {
                    "values": [
                        {
                            "id": "v3.14",
                            "status": "stable",
                            "links": [{"rel": "self", "href": "https://identity.example.com/v3/"}],
                        }
                    ]
                }
            },
        )
        mock.post(
            "https://identity.example.com/v3/auth/tokens",
            json=catalog.v3_token,
            headers={"X-Subject-Token": "token-1"},
        )
        mock.get(
            f"{COMPUTE}/",
            json={
                "version": {
                    "id": "v2.1",
                    "status": "CURRENT",
                    "version": "2.79",
                    "min_version": "2.1",
                    "links": [{"rel": "self", "href": f"{COMPUTE}/"}],
                }
            },
        )
        mock.get(
            "https://image.example.com/",
            json={
                "versions": [
                    {"id": "v2.15", "status": "CURRENT", "links": [{"rel": "self", "href": IMAGE}]}
                ]
            },
        )
        conn = openstack.connection.Connection(
            auth_url="https://identity.example.com/",
            username="gatekeeper",
            password="secret",
            project_id=catalog.project_id,
            user_domain_id="default",
            region_name="RegionOne",
        )
        yield mock, SDKCloud(conn)


def _server(**extra: Any) -> dict[str, Any]:
    return {"id": "srv-1", "name": "trusty-rax-1", "status": "BUILD", "metadata": {}, **extra}


def test_create_server_sends_image_flavor_networks_and_metadata(
    http: tuple[requests_mock.Mocker, SDKCloud],
) -> None:
    mock, cloud = http
    mock.post(f"{COMPUTE}/servers", json={"server": {"id": "srv-1"}}, status_code=202)
    server = cloud.create_server(
        "trusty-rax-1", "img-1", "flavor-2", ["net-9"], {"gatekeeper-pool": "gk"}
    )
    assert server.id == "srv-1"
    assert mock.last_request.json() == {
        "server": {
            "name": "trusty-rax-1",
            "imageRef": "img-1",
            "flavorRef": "flavor-2",
            "networks": [{"uuid": "net-9"}],
            "metadata": {"gatekeeper-pool": "gk"},
        }
    }


def test_get_server_reads_status_address_metadata_and_fault(
    http: tuple[requests_mock.Mocker, SDKCloud],
) -> None:
    mock, cloud = http
    addresses = {
        "private": [
            {"addr": "fd00::5", "version": 6, "OS-EXT-IPS:type": "fixed"},
            {"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed"},
            {"addr": "203.0.113.7", "version": 4, "OS-EXT-IPS:type": "floating"},
        ]
    }
    mock.get(
        f"{COMPUTE}/servers/srv-1",
        json={
            "server": _server(
                status="ERROR",
                addresses=addresses,
                metadata={"gatekeeper-node": "n1"},
                fault={"message": "No valid host was found", "code": 500},
            )
        },
    )
    server = cloud.get_server("srv-1")
    assert server is not None
    assert (server.status, server.address, server.metadata, server.fault) == (
        "ERROR",
        "203.0.113.7",
        {"gatekeeper-node": "n1"},
        "No valid host was found",
    )


def test_missing_server_is_none_and_delete_ignores_it(
    http: tuple[requests_mock.Mocker, SDKCloud],
) -> None:
    mock, cloud = http
    mock.get(f"{COMPUTE}/servers/gone", status_code=404, json={"itemNotFound": {"code": 404}})
    mock.delete(f"{COMPUTE}/servers/gone", status_code=404, json={"itemNotFound": {"code": 404}})
    assert cloud.get_server("gone") is None
    cloud.delete_server("gone")
    assert mock.last_request.method == "DELETE"


def test_list_servers_pages_through_details(http: tuple[requests_mock.Mocker, SDKCloud]) -> None:
    mock, cloud = http
    mock.get(
        f"{COMPUTE}/servers/detail",
        json={
            "servers": [_server(), _server(id="srv-2", status="ACTIVE", accessIPv4="198.51.100.2")]
        },
    )
    servers = cloud.list_servers()
    assert [(s.id, s.status, s.address) for s in servers] == [
        ("srv-1", "BUILD", ""),
        ("srv-2", "ACTIVE", "198.51.100.2"),
    ]


def test_quota_refusal_is_a_quota_error(http: tuple[requests_mock.Mocker, SDKCloud]) -> None:
    mock, cloud = http
    mock.post(
        f"{COMPUTE}/servers",
        status_code=403,
        json={
            "forbidden": {
                "code": 403,
                "message": "Quota exceeded for instances: Requested 1, but already used 10 of 10",
            }
        },
    )
    with pytest.raises(QuotaError, match="Quota exceeded"):
        cloud.create_server("n", "i", "f", [], {})


def test_other_api_errors_are_cloud_errors(http: tuple[requests_mock.Mocker, SDKCloud]) -> None:
    mock, cloud = http
    mock.post(f"{COMPUTE}/servers", status_code=500, json={"computeFault": {"code": 500}})
    with pytest.raises(CloudError) as caught:
        cloud.create_server("n", "i", "f", [], {})
    assert not isinstance(caught.value, QuotaError)


def test_snapshot_posts_create_image_and_reads_the_id(
    http: tuple[requests_mock.Mocker, SDKCloud],
) -> None:
    mock, cloud = http
    mock.post(f"{COMPUTE}/servers/srv-1/action", json={"image_id": "img-7"}, status_code=202)
    assert cloud.create_image_snapshot("srv-1", "trusty-1", {"gatekeeper-pool": "gk"}) == "img-7"
    assert mock.last_request.json() == {
        "createImage": {"name": "trusty-1", "metadata": {"gatekeeper-pool": "gk"}}
    }
    mock.get(f"{IMAGE}/images/img-7", json={"id": "img-7", "name": "trusty-1", "status": "saving"})
    image = cloud.get_image("img-7")
    assert image is not None and image.status == "saving"


def test_limits_give_free_instances(http: tuple[requests_mock.Mocker, SDKCloud]) -> None:
    mock, cloud = http
    mock.get(
        f"{COMPUTE}/limits",
        json={"limits": {"absolute": {"maxTotalInstances": 10, "totalInstancesUsed": 7}}},
    )
    limits = cloud.limits()
    assert (limits.max_instances, limits.used_instances, limits.free) == (10, 7, 3)


def test_flavor_by_name_or_smallest_with_enough_ram(
    http: tuple[requests_mock.Mocker, SDKCloud],
) -> None:
    mock, cloud = http
    mock.get(
        f"{COMPUTE}/flavors/detail",
        json={
            "flavors": [
                {"id": "3", "name": "m1.large", "ram": 8192},
                {"id": "1", "name": "m1.small", "ram": 2048},
                {"id": "2", "name": "m1.medium", "ram": 4096},
            ]
        },
    )
    assert cloud.find_flavor("", 3000) == "2"
    assert cloud.find_flavor("m1.large", 0) == "3"
    with pytest.raises(CloudError, match="at least 16384"):
        cloud.find_flavor("", 16384)


def test_a_server_says_which_availability_zone_nova_placed_it_in(
    http: tuple[requests_mock.Mocker, SDKCloud],
) -> None:
    mock, cloud = http
    placed = _server(status="ACTIVE", **{"OS-EXT-AZ:availability_zone": "az-east-2"})
    mock.get(f"{COMPUTE}/servers/srv-1", json={"server": placed})
    mock.get(f"{COMPUTE}/servers/srv-2", json={"server": _server(id="srv-2")})
    server = cloud.get_server("srv-1")
    assert server is not None and server.availability_zone == "az-east-2"
    # Not scheduled yet (or a cloud that hides zones from its users).
    unplaced = cloud.get_server("srv-2")
    assert unplaced is not None and unplaced.availability_zone == ""
