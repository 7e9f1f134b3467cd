"""Every error gatekeeper raises on purpose.

::

    GatekeeperError
     ├── ConfigError            a site file or layout is invalid (names file, line, key)
     ├── GerritError            talking to Gerrit failed (SSH, command exit status)
     │    ├── EventParseError   a stream-events line is not an event we understand
     │    ├── GerritAccessError  Gerrit refuses the account a capability it needs
     │    └── GerritOutcomeUnknownError  sent, but no answer came: it may have run
     ├── DispatchError          Gearman could not take or run a build
     │    ├── CertificateError  a certificate or key is missing, unreadable or foreign
     │    └── ResultRefusedError  a build's packet not from the worker it was handed to
     ├── OperationError         an operator's request (enqueue, promote...) cannot be done
     │    ├── RequestError      a request that is malformed, too large or expired
     │    └── TokenError        no operator token, or one that is not valid or not enough
     ├── PoolError              the node pool could not launch, claim or delete a node
     │    └── ProviderError     a provider's API refused or failed
     ├── TransportError         moving files to or running commands on a node failed
     │    └── SSHError          an SSH connection or a command over it failed
     └── WorkspaceError         preparing the git workspace for a build failed
          └── MergeConflictError  a change under test does not merge

Third-party exceptions are translated at the boundary (``raise GerritError(...)
from exc``) so callers only ever catch these.
"""

from __future__ import annotations


class GatekeeperError(Exception):
    """Base of every error gatekeeper raises on purpose."""


class ConfigError(GatekeeperError):
    """A configuration file is invalid.

    ``errors`` holds one line per problem, each already formatted as
    ``file:line: key.path: message``.
    """

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class GerritError(GatekeeperError):
    """Talking to Gerrit failed, or Gerrit refused a command."""


class EventParseError(GerritError):
    """A line from ``gerrit stream-events`` could not be turned into an event."""


class GerritAccessError(GerritError):
    """Gerrit refuses the account something it needs (the 'Stream Events'
    capability): trying again changes nothing until an administrator acts."""


class GerritOutcomeUnknownError(GerritError):
    """A command reached Gerrit (or may have) but its answer never came back:
    the connection broke or timed out after the request was sent. Running it
    again is only safe if it is idempotent; otherwise ask Gerrit what happened."""


class DispatchError(GatekeeperError):
    """Gearman could not accept or run a build."""


class CertificateError(DispatchError):
    """A certificate or key is missing, unreadable, or not one this site issued."""


class ResultRefusedError(DispatchError):
    """A packet about a build (its start or its result) is not believed: it is
    unsigned, signed by someone the site's CA did not make a worker, signed
    for another build or packet, or not from the worker the build was handed
    to. The message says which."""


class PoolError(GatekeeperError):
    """The node pool could not launch, claim or delete a node."""


class ProviderError(PoolError):
    """A provider (cloud, static host list, local directories) failed."""


class TransportError(GatekeeperError):
    """Copying to, running on, or copying from a node failed."""


class SSHError(TransportError):
    """An SSH connection could not be made (unreachable, unknown or changed
    host key, key refused) or a command over it failed. Raised by
    :mod:`gatekeeper.node.ssh`; Gerrit and the pool wrap it in their own."""


class OperationError(GatekeeperError):
    """An operator's request to a running scheduler cannot be done; says why."""


class RequestError(OperationError):
    """An operator request arrived malformed (not a JSON object, arguments
    the function does not take), too large, or after it expired."""


class TokenError(OperationError):
    """An operator's request carries no token, or one this site did not sign,
    that has expired, or whose role may not do what was asked."""


class WorkspaceError(GatekeeperError):
    """Preparing a build's git workspace failed (clone, fetch or merge)."""


class MergeConflictError(WorkspaceError):
    """A change under test does not merge onto the branch and the changes
    ahead of it. ``change`` names it: ``project number,patchset``."""

    def __init__(self, message: str, change: str) -> None:
        super().__init__(message)
        self.change = change
