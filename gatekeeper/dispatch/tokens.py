"""Operator tokens: who sends an operator request, and what they may do.

A token is an HS256 JWT signed with the site's secret (``admin.secret-file``,
by default ``<state-dir>/admin.secret``: 32 random bytes made at the
scheduler's first start, mode 0600). ``gatekeeper admin token`` signs one
for a user and a role; the scheduler checks it on every request
(:mod:`gatekeeper.dispatch.admin`). Whoever can read the secret can sign any
token, so the file is as precious as the daemon's own account.

Roles: ``operator`` may enqueue, dequeue and promote; ``admin`` may do that
and read the audit log. ``status`` needs no token at all (see
:data:`gatekeeper.dispatch.admin.NEEDS`).
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from gatekeeper.errors import ConfigError, TokenError
from gatekeeper.model.outside import shown

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "LEEWAY",
    "ROLES",
    "Caller",
    "allows",
    "ensure_secret",
    "mint",
    "read_secret",
    "verify",
]

#: Lowest first: a role may do what every role before it may.
ROLES = ("operator", "admin")
# Both name gatekeeper, so a JWT another system signed (even with a reused
# secret) is refused rather than read as ours.
ISSUER = "gatekeeper"
AUDIENCE = "gatekeeper-operators"
#: Seconds of clock difference between the signing host and the scheduler.
LEEWAY = 30.0
# Far more than a user name needs; a claim longer than this is not one we signed.
_USER_MAX = 128


@dataclass(frozen=True)
class Caller:
    """Who a verified token says sent the request."""

    user: str
    role: str


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what needs ``needed``."""
    return role in ROLES and needed in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_user(user: str) -> str:
    """``user``, if it is a name a token may carry.

    :raises TokenError: empty, too long, or with anything but printable
        characters (no controls, line separators or lone surrogates: it
        reaches audit rows, log lines and terminals).
    """
    if not user or len(user) > _USER_MAX or not user.isprintable():
        raise TokenError(
            f"a user name is 1 to {_USER_MAX} printable characters, not '{shown(user)}'"
        )
    return user


def mint(secret: bytes, user: str, role: str, lifetime: float, now: float | None = None) -> str:
    """A token for ``user`` in ``role``, valid for ``lifetime`` seconds.

    :raises TokenError: an unknown role, a bad user name, or no lifetime.
    """
    if role not in ROLES:
        raise TokenError(f"unknown role '{shown(role)}' (roles: {', '.join(ROLES)})")
    if lifetime <= 0:
        raise TokenError("a token must expire: give a lifetime above 0")
    now = time.time() if now is None else now
    claims = {
        "sub": check_user(user),
        "role": role,
        "iat": int(now),
        "exp": int(now + lifetime),
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: bytes, token: str) -> Caller:
    """The caller a token names, if the site's secret signed it and it is current.

    :raises TokenError: anything else; the message says why, without the token.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("the token has expired: get a new one (gatekeeper admin token)") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("the token was not signed with this site's secret") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"not a valid gatekeeper token: {shown(exc)}") from exc
    user, role = claims.get("sub"), claims.get("role")
    if not isinstance(user, str) or not isinstance(role, str) or role not in ROLES:
        raise TokenError(f"the token names no known role (roles: {', '.join(ROLES)})")
    return Caller(check_user(user), role)


def read_secret(path: Path) -> bytes:
    """The site's signing secret.

    :raises ConfigError: missing, unreadable, too short, or readable by others.
    """
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the operator token secret ({exc.strerror})"
        ) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Anyone who reads it can sign an admin token: refuse rather than trust it.
        raise ConfigError(f"{path}: group or others may read it; chmod 600 it")
    if len(data) < 32:
        raise ConfigError(f"{path}: shorter than 32 bytes, not a secret gatekeeper made")
    return data


def ensure_secret(path: Path) -> bytes:
    """The site's secret; made (32 random bytes, mode 0600) if there is none yet.

    :raises ConfigError: it exists but cannot be used (see :func:`read_secret`).
    """
    if path.exists():
        return read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: a process
    # starting at the same time sees no file or the whole one, and if two
    # make one, the link of the second fails and it reads the first's.
    fd, tmp = tempfile.mkstemp(prefix=".admin-secret-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot make the operator token secret ({exc.strerror})"
        ) from exc
    finally:
        os.unlink(tmp)
    return read_secret(path)
