"""Logs under /logs/: indexes, text, gz, the HTML view, and confinement to
the log root against hostile names and links (through the app, and raw over
a socket to uvicorn, where no client tidies the path first)."""

from __future__ import annotations

import gzip
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from gatekeeper.config.site import SiteConfig
from gatekeeper.db.builds import BuildStore
from gatekeeper.db.engine import Database
from gatekeeper.web.app import make_app
from gatekeeper.web.context import WebContext
from gatekeeper.web.logs import severity, tail_html

pytestmark = pytest.mark.timeout(60)

SECRET = "the-secret-outside-the-log-root"
LOG_PATH = "45/12345/2/check/gate-nova-python27/abcdef1"
UUID = "abcdef1" + "0" * 25


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'gk.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def site(tmp_path: Path) -> SiteConfig:
    site = SiteConfig().resolve(tmp_path)
    assert site.log_root is not None
    build = site.log_root / LOG_PATH
    (build / "logs").mkdir(parents=True)
    (build / "console.txt").write_text(
        f"gatekeeper build {UUID} job gate-nova-python27\n"
        "ERROR: something broke <b>bold</b>\n"
        f"gatekeeper build {UUID} result FAILURE\n"
    )
    (build / "logs" / "syslog.txt").write_text(
        "Jan  1 12:00:00 host nova-compute[123]: something ERROR happened\n"
        "Jan  1 12:00:01 host kernel: all fine\n"
    )
    with gzip.open(build / "logs" / "screen-n-cpu.txt.gz", "wt") as handle:
        for n in range(1, 101):
            level = "WARNING" if n == 50 else "INFO"
            handle.write(f"2016-01-01 12:00:00.{n:03d} 1234 {level} nova.compute [-] line {n}\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    return site


def app_client(site: SiteConfig, db: Database) -> TestClient:
    return TestClient(make_app(WebContext(site=site, db=db, live=lambda: {})))


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("sqlite_db", id="sqlite"),
        pytest.param("postgres_db", id="postgresql", marks=pytest.mark.postgresql),
    ],
)
def test_index_is_titled_with_the_builds_row(
    site: SiteConfig, database: str, request: pytest.FixtureRequest
) -> None:
    """The row is found by the uuid prefix in the path (a range on the
    primary key: PostgreSQL's collation must agree)."""
    db: Database = request.getfixturevalue(database)
    builds = BuildStore(db)
    builds.dispatched(UUID[:6] + "0" + "f" * 25, "gate-nova-python27", "x", 1, 1, "check", 9.0)
    builds.dispatched(
        UUID,
        "gate-nova-python27",
        "openstack/nova",
        12345,
        2,
        "check",
        1.0,
        parameters={"LOG_PATH": LOG_PATH},
    )
    builds.completed(UUID, "SUCCESS", 2.0)
    with app_client(site, db) as web:
        page = web.get(f"/logs/{LOG_PATH}/")
        assert page.status_code == 200
        assert "<title>gate-nova-python27 12345,2 SUCCESS" in page.text
        assert f'href="/build/{UUID}"' in page.text
        assert 'href="/logs/45/12345/2/check/gate-nova-python27/abcdef1/logs/"' in page.text
        # No trailing slash: redirected to the directory.
        moved = web.get(f"/logs/{LOG_PATH}", follow_redirects=False)
        assert moved.status_code == 301 and moved.headers["location"].endswith("/abcdef1/")


def test_index_without_a_row_reads_the_console(site: SiteConfig, db: Database) -> None:
    with app_client(site, db) as web:
        page = web.get(f"/logs/{LOG_PATH}/")
        assert "<title>gate-nova-python27 FAILURE" in page.text
        assert web.get("/logs/").status_code == 200
        assert web.get("/logs/nothing/here").status_code == 404


def test_text_and_gz_are_served_as_text(site: SiteConfig, db: Database) -> None:
    with app_client(site, db) as web:
        text = web.get(f"/logs/{LOG_PATH}/console.txt")
        assert text.headers["content-type"] == "text/plain; charset=utf-8"
        assert "<b>bold</b>" in text.text
        assert "sandbox" in text.headers["content-security-policy"]
        gz = web.get(
            f"/logs/{LOG_PATH}/logs/screen-n-cpu.txt.gz", headers={"accept-encoding": "identity"}
        )
        assert gz.headers["content-type"] == "text/plain; charset=utf-8"
        assert "content-encoding" not in gz.headers
        assert gz.content.startswith(b"2016-01-01 12:00:00.001 1234 INFO")
        assert gz.content.count(b"\n") == 100
        # A client that takes gzip gets the bytes as stored, and inflates them.
        passed = web.get(
            f"/logs/{LOG_PATH}/logs/screen-n-cpu.txt.gz", headers={"accept-encoding": "gzip"}
        )
        assert passed.headers["content-encoding"] == "gzip"
        assert passed.content == gz.content


def test_html_view_numbers_lines_and_marks_severity(site: SiteConfig, db: Database) -> None:
    with app_client(site, db) as web:
        page = web.get(f"/logs/{LOG_PATH}/logs/screen-n-cpu.txt.gz?view=html")
        assert page.headers["content-type"].startswith("text/html")
        assert '<span class="gk-line sev-warning" id="L50">' in page.text
        assert '<a class="gk-lno" href="#L100">100</a>' in page.text
        assert "/static/logs.js" in page.text and "<script>" not in page.text
        syslog = web.get(f"/logs/{LOG_PATH}/logs/syslog.txt?view=html").text
        assert '<span class="gk-line sev-error" id="L1">' in syslog
        assert '<span class="gk-line" id="L2">' in syslog
        console = web.get(f"/logs/{LOG_PATH}/console.txt?view=html").text
        assert "ERROR: something broke &lt;b&gt;bold&lt;/b&gt;" in console


@pytest.mark.parametrize(
    ("line", "level"),
    [
        pytest.param(b"2016-01-01 12:00:00.123 1234 ERROR nova.compute", "error", id="oslo-error"),
        pytest.param(b"2016-01-01 12:00:00.123 1234 TRACE nova x", "trace", id="oslo-trace"),
        pytest.param(b"2016-01-01 12:00:00.123 99 CRITICAL nova x", "critical", id="oslo-critical"),
        pytest.param(b"2016-01-01 12:00:00.123 1234 INFO nova ERROR", "", id="oslo-info"),
        pytest.param(b"Jan  1 12:00:00 h proc[1]: a WARNING b", "warning", id="syslog-warning"),
        pytest.param(b"Dec 24 12:00:00 h kernel: TRACE x", "trace", id="syslog-trace"),
        pytest.param(b"Jan  1 12:00:00 h proc[1]: fine", "", id="syslog-fine"),
        pytest.param(b"ERROR: the workspace", "error", id="console"),
        pytest.param(b"no ERRORS here", "", id="plain"),
    ],
)
def test_severity(line: bytes, level: str) -> None:
    assert severity(line) == level


def test_file_names_and_text_are_escaped(site: SiteConfig, db: Database) -> None:
    assert site.log_root is not None
    build = site.log_root / LOG_PATH
    (build / "<script>.txt").write_text("<script>alert(2)</script>\n")
    (build / '<img src=x onerror="alert(1)">').mkdir()
    with app_client(site, db) as web:
        index = web.get(f"/logs/{LOG_PATH}/").text
        assert "<script>" not in index and "<img" not in index
        assert "&lt;script&gt;.txt" in index
        assert 'href="/logs/45/12345/2/check/gate-nova-python27/abcdef1/%3Cscript%3E.txt' in index
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;/" in index
        view = web.get(f"/logs/{LOG_PATH}/%3Cscript%3E.txt?view=html")
        assert view.status_code == 200
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in view.text
        assert "<script>alert" not in view.text
        # The directory's own index: its name in the title and crumbs, escaped.
        inner = web.get(f"/logs/{LOG_PATH}/%3Cimg%20src=x%20onerror=%22alert(1)%22%3E/")
        assert inner.status_code == 200 and "<img" not in inner.text


def test_a_script_inside_a_log_never_runs_as_html(site: SiteConfig, db: Database) -> None:
    assert site.log_root is not None
    build = site.log_root / LOG_PATH
    (build / "page.html").write_text("<script>alert(1)</script>")
    (build / "evil.js").write_text("alert(1)")
    with app_client(site, db) as web:
        page = web.get(f"/logs/{LOG_PATH}/page.html")
        assert page.headers["content-type"].startswith("text/html")
        assert "sandbox" in page.headers["content-security-policy"]
        assert "script-src" not in page.headers["content-security-policy"]
        # nosniff and text/plain: a <script src> of it is refused by browsers.
        js = web.get(f"/logs/{LOG_PATH}/evil.js")
        assert js.headers["content-type"] == "text/plain; charset=utf-8"


def _hostile(site: SiteConfig, tmp_path: Path) -> None:
    assert site.log_root is not None
    build = site.log_root / LOG_PATH
    os.symlink(tmp_path / "outside" / "secret.txt", build / "link.txt")
    os.symlink(tmp_path / "outside", build / "linkdir")
    # build is <tmp>/state/logs/<6 components of LOG_PATH>: 8 levels up is <tmp>.
    os.symlink("../../../../../../../../outside/secret.txt", build / "relative.txt")
    os.symlink(build / "console.txt", build / "inside.txt")


# The log root is <tmp>/state/logs; the secret is <tmp>/outside/secret.txt.
HOSTILE = [
    pytest.param("/logs/../../outside/secret.txt", id="dotdot"),
    pytest.param("/logs/%2e%2e/%2e%2e/outside/secret.txt", id="encoded-dotdot"),
    pytest.param("/logs/%2E%2E%2F%2E%2E%2Foutside%2Fsecret.txt", id="encoded-slash"),
    pytest.param("/logs/45/../../../outside/secret.txt", id="dotdot-deep"),
    pytest.param("/logs/..%5c..%5coutside%5csecret.txt", id="backslash"),
    pytest.param("/logs//{outside}/secret.txt", id="absolute"),
    pytest.param("/logs/%2F{outside}/secret.txt", id="encoded-absolute"),
    pytest.param(f"/logs/{LOG_PATH}/link.txt", id="symlink-out"),
    pytest.param(f"/logs/{LOG_PATH}/linkdir/secret.txt", id="symlinked-dir-out"),
    pytest.param(f"/logs/{LOG_PATH}/linkdir/", id="symlinked-dir-index"),
    pytest.param(f"/logs/{LOG_PATH}/relative.txt", id="relative-symlink-out"),
    pytest.param(f"/logs/{LOG_PATH}/console.txt%00.png", id="nul"),
    pytest.param("/logs/%00", id="nul-alone"),
]


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET ``target`` byte for byte: no client normalizes the path."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.fixture
def served(site: SiteConfig, db: Database) -> Iterator[int]:
    app = make_app(WebContext(site=site, db=db, live=lambda: {}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("target", HOSTILE)
def test_nothing_outside_the_log_root_over_the_wire(
    site: SiteConfig, tmp_path: Path, served: int, target: str
) -> None:
    _hostile(site, tmp_path)
    status, data = _raw_get(served, target.replace("{outside}", str(tmp_path / "outside")))
    assert SECRET.encode() not in data
    assert status in (400, 404)


@pytest.mark.parametrize("target", HOSTILE)
def test_nothing_outside_the_log_root_through_the_app(
    site: SiteConfig, db: Database, tmp_path: Path, target: str
) -> None:
    _hostile(site, tmp_path)
    with app_client(site, db) as web:
        page = web.get(target.replace("{outside}", str(tmp_path / "outside")))
        assert SECRET not in page.text
        assert page.status_code in (400, 404)


def test_a_symlink_inside_the_root_still_works(
    site: SiteConfig, db: Database, tmp_path: Path
) -> None:
    _hostile(site, tmp_path)
    with app_client(site, db) as web:
        assert "something broke" in web.get(f"/logs/{LOG_PATH}/inside.txt").text
        index = web.get(f"/logs/{LOG_PATH}/").text
        # Listed by name (the link, not its target), never followed.
        assert "link.txt" in index and str(tmp_path / "outside") not in index


def test_a_name_that_is_not_utf8_is_served(site: SiteConfig, db: Database) -> None:
    assert site.log_root is not None
    directory = os.fsencode(site.log_root / LOG_PATH)
    with open(directory + b"/caf\xe9.txt", "wb") as handle:
        handle.write(b"latin-1 named\n")
    with app_client(site, db) as web:
        index = web.get(f"/logs/{LOG_PATH}/").text
        assert "caf%E9.txt" in index
        assert web.get(f"/logs/{LOG_PATH}/caf%E9.txt").text == "latin-1 named\n"


@pytest.mark.parametrize(
    "content",
    [b"", b"a", b"a\n", b"a\nb", b"\n\n", b"x" * 200_000 + b"\ny\n", b"<b>\n" * 10],
    ids=["empty", "one-no-newline", "one", "last-no-newline", "blank", "long-line", "html"],
)
@pytest.mark.parametrize("keep", [1, 2, 5])
def test_the_console_tail_counts_like_a_full_read(
    tmp_path: Path, content: bytes, keep: int
) -> None:
    """The build page's fast tail (counted in C, read backwards) numbers and
    renders the same lines as a parse of every line (the .gz path)."""
    (tmp_path / "c.txt").write_bytes(content)
    with gzip.open(tmp_path / "c.txt.gz", "wb") as handle:
        handle.write(content)
    assert tail_html(tmp_path / "c.txt", keep) == tail_html(tmp_path / "c.txt.gz", keep)


def test_a_corrupt_gz_ends_where_it_breaks(site: SiteConfig, db: Database) -> None:
    assert site.log_root is not None
    # Lines that do not compress away: half the gzip is about half the text.
    text = b"".join(b"good line %d %s\n" % (n, os.urandom(8).hex().encode()) for n in range(999))
    whole = gzip.compress(text)
    (site.log_root / LOG_PATH / "broken.txt.gz").write_bytes(whole[: len(whole) // 2])
    with app_client(site, db) as web:
        raw = web.get(f"/logs/{LOG_PATH}/broken.txt.gz", headers={"accept-encoding": "identity"})
        assert raw.status_code == 200
        assert len(raw.content) > len(text) // 4 and text.startswith(raw.content)
        view = web.get(f"/logs/{LOG_PATH}/broken.txt.gz?view=html")
        assert view.status_code == 200 and view.text.rstrip().endswith("</html>")


def test_a_new_site_has_an_empty_log_index(tmp_path: Path, db: Database) -> None:
    site = SiteConfig().resolve(tmp_path)
    assert site.log_root is not None and not site.log_root.exists()
    with app_client(site, db) as web:
        assert web.get("/logs/").status_code == 200
        assert web.get("/logs/45/").status_code == 404
