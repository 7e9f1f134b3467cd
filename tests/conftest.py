"""Shared pytest fixtures (each group lives in tests/fixtures/)."""

from tests.fixtures.db import *  # noqa: F401,F403
from tests.fixtures.gearmand import *  # noqa: F401,F403
from tests.fixtures.gerrit_sim import *  # noqa: F401,F403
from tests.fixtures.sshd import *  # noqa: F401,F403
from tests.fixtures.strict import *  # noqa: F401,F403
