"""Stand-in tempest: checks the stand-in devstack's services from outside."""

import configparser
import os
import unittest


def _conf() -> configparser.ConfigParser:
    conf = configparser.ConfigParser()
    conf.read(os.path.join(os.environ["TEMPEST_CONFIG_DIR"], "tempest.conf"))
    return conf


def _running(service: str) -> bool:
    status = _conf()["stand_in"]["status_dir"]
    with open(os.path.join(status, f"{service}.pid")) as fh:
        pid = int(fh.read())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class TestIdentity(unittest.TestCase):
    def test_smoke_keystone_is_running(self) -> None:
        self.assertTrue(_running("key"))


class TestCompute(unittest.TestCase):
    def test_smoke_nova_api_is_running(self) -> None:
        self.assertTrue(_running("n-api"))

    def test_nova_is_available(self) -> None:
        self.assertEqual(_conf()["service_available"]["nova"], "True")

    @unittest.skipUnless(os.environ.get("STANDIN_SWIFT"), "object storage is not deployed")
    def test_object_storage(self) -> None:
        self.fail("unreachable")
