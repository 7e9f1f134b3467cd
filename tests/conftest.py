"""Shared pytest fixtures (each group lives in tests/fixtures/)."""

from tests.fixtures.browser import *  # noqa: F403
from tests.fixtures.db import *  # noqa: F403
from tests.fixtures.gearmand import *  # noqa: F403
from tests.fixtures.gerrit_sim import *  # noqa: F403
from tests.fixtures.smtp import *  # noqa: F403
from tests.fixtures.sshd import *  # noqa: F403
from tests.fixtures.strict import *  # noqa: F403
