"""The operator-request parser and the tokens behind it.

Whatever bytes arrive as a request's arguments, :meth:`AdminWorker.handle`
answers cleanly (``{"ok": ...}``), writes one audit row, keeps its log line
on one bounded line, and runs a handler only for a request whose token this
site signed and whose role allows it. The audit rows go to a real SQLite
database; the handlers are recorders (they stand for the scheduler, which
these tests do not exercise: tests/functional/test_operators.py does).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatekeeper.cli import main
from gatekeeper.db.audit import AuditLog
from gatekeeper.db.engine import Database
from gatekeeper.dispatch import admin, tokens
from gatekeeper.errors import ConfigError, TokenError

SECRET = b"k" * 32
NOW = time.time()
VALID = {
    "operator": tokens.mint(SECRET, "carol", "operator", 3600),
    "admin": tokens.mint(SECRET, "bob", "admin", 3600),
}
INVALID = [
    tokens.mint(SECRET, "bob", "admin", 60, now=NOW - 3600),  # expired
    tokens.mint(b"o" * 32, "bob", "admin", 3600),  # another site's secret
    jwt.encode({"sub": "bob", "role": "admin", "exp": int(NOW) + 600}, SECRET),  # no iss/aud
    jwt.encode(
        {"sub": "bob", "role": "root", "iat": int(NOW), "exp": int(NOW) + 600}
        | {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE},
        SECRET,
    ),  # a role that does not exist
    "",
    "a.b.c",
]


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditLog]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('audit') / 'audit.db'}")
    db.migrate()
    yield AuditLog(db)
    db.dispose()


class Recorder:
    """Handlers that remember what they were asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def handlers(self) -> dict[str, admin.Handler]:
        def one(name: str) -> admin.Handler:
            def handle(args: dict[str, Any], expires: float | None) -> object:
                self.calls.append((name, args))
                return f"{name} done"

            return handle

        return {name: one(name) for name in admin.FUNCTIONS}


def worker(audit: AuditLog, recorder: Recorder) -> admin.AdminWorker:
    return admin.AdminWorker("fuzz", [], recorder.handlers(), secret=SECRET, audit=audit)


def arguments() -> st.SearchStrategy[bytes]:
    """Junk, JSON of any shape, and requests that look right, with any token."""
    # Lone surrogates: valid in JSON ("\ud800"), but not UTF-8 a log or a
    # database can write.
    odd = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4)
    token = st.one_of(st.none(), st.sampled_from([*VALID.values(), *INVALID]), st.text())
    value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text() | odd, inner, max_size=3)
        ),
        max_leaves=8,
    )
    shaped = st.fixed_dictionaries(
        {
            "pipeline": st.text(max_size=20) | odd,
            "project": st.text(max_size=20),
            "change": st.text(max_size=10),
            "changes": st.lists(st.text(max_size=10), max_size=3),
            "limit": st.integers(-5, 600),
        }
    )

    def with_token(args: dict[str, Any], tok: object, drop: list[str]) -> bytes:
        body = {k: v for k, v in args.items() if k not in drop}
        if tok is not None:
            body["token"] = tok
        return json.dumps(body).encode()

    return st.one_of(
        st.binary(max_size=200),
        # Nesting deeper than json (and Python's stack) can read.
        st.integers(1, admin.MAX_REQUEST).map(lambda n: b"[" * n + b"]" * n),
        st.builds(lambda v: json.dumps(v).encode(), value),
        st.builds(
            with_token,
            shaped,
            token,
            st.lists(st.sampled_from(["pipeline", "project", "change", "changes", "limit"])),
        ),
    )


def may(raw: bytes, function: str) -> bool:
    """Whether this request may run its handler, worked out apart from the worker."""
    needed = admin.NEEDS.get(function, "never")
    try:
        token = json.loads(raw or b"{}").get("token")
    except (ValueError, AttributeError, RecursionError):
        return False
    if token is not None:
        if not isinstance(token, str) or token not in VALID.values():
            return False
        role = "admin" if token == VALID["admin"] else "operator"
        return needed is None or role == "admin" or needed == "operator"
    return needed is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by hand, then kept: a key that is a lone surrogate lost the audit
# row and broke the log line.
@example(name="gatekeeper:status", raw=b'{"\\ud800": 1}')
@given(
    name=st.one_of(st.sampled_from([admin.PREFIX + f for f in admin.FUNCTIONS]), st.text()),
    raw=arguments(),
)
def test_any_request_gets_a_clean_answer_and_a_handler_only_with_a_valid_token(
    audit: AuditLog, name: str, raw: bytes
) -> None:
    recorder = Recorder()
    before = len(audit.recent(admin.AUDIT_MAX))
    answer = worker(audit, recorder).handle(name, raw)
    assert set(answer) in ({"ok", "result"}, {"ok", "error"})
    json.dumps(answer)  # what goes back over Gearman
    function = name.removeprefix(admin.PREFIX)
    if recorder.calls:
        assert may(raw, function), f"{function} ran for {raw!r}"
    if not may(raw, function):
        assert recorder.calls == [] and answer["ok"] is False
    rows = audit.recent(admin.AUDIT_MAX)
    assert len(rows) == min(before + 1, admin.AUDIT_MAX)
    # No token is ever written down, whatever shape the request had.
    assert not any(t in rows[0].target for t in VALID.values())


def test_a_request_over_the_limit_is_refused_unread(
    audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.dispatch.admin")
    recorder = Recorder()
    body = json.dumps({"token": VALID["admin"], "pipeline": "g\n" * 2_000_000}).encode()
    answer = worker(audit, recorder).handle("gatekeeper:enqueue", body)
    assert answer == {
        "ok": False,
        "error": f"the request is {len(body)} bytes; at most {admin.MAX_REQUEST} are accepted",
    }
    assert recorder.calls == []
    [line] = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and len(line) < 1000 and "anonymous" in line


def test_tokens_name_their_user_and_role() -> None:
    assert tokens.verify(SECRET, VALID["operator"]) == tokens.Caller("carol", "operator")
    # Clocks a little apart still agree (leeway), a lot apart do not.
    nearly = tokens.mint(SECRET, "bob", "admin", 60, now=time.time() - 80)
    assert tokens.verify(SECRET, nearly).user == "bob"
    for token in INVALID:
        with pytest.raises(TokenError):
            tokens.verify(SECRET, token)
    with pytest.raises(TokenError, match="must expire"):
        tokens.mint(SECRET, "bob", "admin", 0)
    with pytest.raises(TokenError, match="printable"):
        tokens.mint(SECRET, "bob\nadmin", "admin", 60)
    with pytest.raises(TokenError, match="printable"):
        tokens.mint(SECRET, "\udcff", "admin", 60)


def test_the_secret_is_made_once_private_and_refused_when_others_can_read_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "admin.secret"
    secret = tokens.ensure_secret(path)
    assert len(secret) == 32 and tokens.ensure_secret(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        tokens.ensure_secret(path)


def site_file(tmp_path: Path) -> Path:
    site = tmp_path / "gatekeeper.yaml"
    site.write_text(f"state-dir: {tmp_path / 'state'}\ngearman:\n  listen: {{port: 1}}\n")
    return site


def test_admin_token_prints_a_token_the_site_accepts(tmp_path: Path) -> None:
    site = site_file(tmp_path)
    result = CliRunner().invoke(main, ["admin", "token", "-c", str(site), "--user", "dave"])
    assert result.exit_code == 1 and "no secret yet" in result.output
    secret = tokens.ensure_secret(tmp_path / "state" / "admin.secret")
    args = ["admin", "token", "-c", str(site), "--user", "dave", "--role", "admin"]
    result = CliRunner().invoke(main, [*args, "--expires", "2h"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert tokens.verify(secret, token) == tokens.Caller("dave", "admin")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7200


def test_enqueue_without_any_token_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is sent: the site's Gearman (port 1) is never asked."""
    monkeypatch.delenv("GATEKEEPER_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    args = ["--pipeline", "gate", "--project", "p", "--change", "1,1"]
    result = CliRunner().invoke(main, ["enqueue", "-c", str(site_file(tmp_path)), *args])
    assert result.exit_code == 1
    assert "enqueue needs an operator token" in result.output
    assert "gatekeeper admin token --user NAME" in result.output


def test_the_local_user_gets_a_token_when_it_can_read_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gatekeeper.cli import _find_token
    from gatekeeper.config.loader import load_local_site

    monkeypatch.delenv("GATEKEEPER_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    site = load_local_site(site_file(tmp_path))
    assert _find_token(site, None) is None
    secret = tokens.ensure_secret(tmp_path / "state" / "admin.secret")
    found = _find_token(site, None)
    assert found is not None
    caller = tokens.verify(secret, found)
    assert caller.role == "admin" and caller.user.startswith("local:")
    # A token file or --token wins over the local one.
    (tmp_path / "config" / "gatekeeper").mkdir(parents=True)
    (tmp_path / "config" / "gatekeeper" / "token").write_text(VALID["operator"] + "\n")
    assert _find_token(site, None) == VALID["operator"]
    assert _find_token(site, "given") == "given"
    assert os.environ.get("GATEKEEPER_TOKEN") is None
