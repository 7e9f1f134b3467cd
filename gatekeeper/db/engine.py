"""The engine and sessions every component shares.

SQLite (the embedded default) is opened in WAL mode with a busy timeout so
the scheduler, workers and pool threads of one process, and several
processes on one host, can share the file. PostgreSQL is used as given by
its URL.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gatekeeper.errors import GatekeeperError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Milliseconds a SQLite writer waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant works: it only has to be the same in every gatekeeper process.
_PG_MIGRATE_LOCK = 0x6A7E_6B65
_migrate_lock = threading.Lock()
# Pauses before each new try of a transaction whose connection was lost: long
# enough together (about 15 s) for a database server to restart.
RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)

T = TypeVar("T")


class Database:
    """Engine plus session factory. Shared by every thread of a process.

    :raises GatekeeperError: the URL is not one SQLAlchemy understands.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except SQLAlchemyError as exc:
            raise GatekeeperError(f"bad database URL: {exc}") from exc
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._sqlite_path: Path | None = None
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                self._sqlite_path = Path(parsed.database).expanduser().resolve()
                self._sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            # Sessions move between threads (a pool thread hands a node to a
            # worker); the connection pool makes sure one thread at a time.
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            }
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._claim_engine: Engine | None = None
        self._claim_engine_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Database {self.engine.url!r}>"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def transaction(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in one transaction, run again if the connection was lost.

        A database server that restarts between two operations costs nothing
        (``pool_pre_ping`` replaces the dead pooled connection); one that
        goes away during a transaction rolls it back, and the whole of
        ``work`` is tried again, a few times over about 15 seconds. ``work``
        must therefore do nothing but database operations.

        :raises sqlalchemy.exc.SQLAlchemyError: any other error, or the
            connection could not be had again.
        """
        pauses = iter(RETRY_PAUSES)
        while True:
            try:
                with self.session() as session:
                    return work(session)
            except DBAPIError as exc:
                pause = next(pauses, None)
                if pause is None or not self._lost_connection(exc):
                    raise
                log.warning("database connection lost (%s); trying again", exc.orig)
                threading.Event().wait(pause)

    def _lost_connection(self, exc: DBAPIError) -> bool:
        if exc.connection_invalidated:
            return True
        # SQLite's OperationalError is "database is locked" and such, which
        # its own busy timeout has already waited out.
        return not self.is_sqlite and isinstance(exc, OperationalError)

    def ping(self) -> None:
        """Ask the database a trivial question.

        :raises GatekeeperError: it does not answer.
        """
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise GatekeeperError(f"the database does not answer: {exc.orig}") from exc

    def migrate(self) -> None:
        """Bring the schema to the newest migration.

        Safe to call from several threads and processes at once: they take
        turns (a PostgreSQL advisory lock, or a lock file next to the SQLite
        database), and whoever comes second finds nothing to do.
        """
        with _migrate_lock, self._cross_process_lock(), self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
                conn.commit()
            try:
                self._upgrade(conn)
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATE_LOCK})
                    conn.commit()

    def _upgrade(self, conn: Connection) -> None:
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        # Keep alembic from reconfiguring the process's logging.
        cfg.attributes["configure_logging"] = False
        command.upgrade(cfg, "head")
        log.debug("database %s migrated to head", self.engine.url)

    @contextmanager
    def _cross_process_lock(self) -> Iterator[None]:
        if self._sqlite_path is None:
            yield
            return
        lock_path = self._sqlite_path.with_name(self._sqlite_path.name + ".migrate-lock")
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def claim_engine(self) -> Engine:
        """A second engine, for node claims on PostgreSQL (made on first use,
        closed with :meth:`dispose`). Claims are many, small and come from
        every worker thread, so its pool skips the shared engine's pre-ping
        round trip (a connection the server dropped shows as a failed
        statement, and the claim is tried once more) and never makes a
        claimer wait for a connection.
        """
        with self._claim_engine_lock:
            if self._claim_engine is None:
                # pool_size 0: no limit, as many connections as threads claim at once.
                self._claim_engine = create_engine(self.engine.url, pool_size=0)
            return self._claim_engine

    def dispose(self) -> None:
        """Close every pooled connection."""
        with self._claim_engine_lock:
            claim_engine, self._claim_engine = self._claim_engine, None
        if claim_engine is not None:
            claim_engine.dispose()
        self.engine.dispose()


def rowcount(result: object) -> int:
    """Rows an UPDATE or DELETE touched (``Session.execute`` is typed as
    returning a Result; for DML it is a CursorResult)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def latest_revision() -> str:
    """The newest migration's revision id: what a migrated database is at."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
