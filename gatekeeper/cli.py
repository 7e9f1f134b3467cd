"""The ``gatekeeper`` command."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

import click

from gatekeeper import __version__
from gatekeeper.cli_certs import register as register_certs_commands
from gatekeeper.cli_insights import register as register_insights_commands
from gatekeeper.cli_pool import pool_status as show_pool_status
from gatekeeper.cli_pool import register as register_pool_commands
from gatekeeper.config.loader import load_local_site
from gatekeeper.config.site import SiteConfig
from gatekeeper.errors import ConfigError, GatekeeperError, TokenError
from gatekeeper.model.outside import shown

if TYPE_CHECKING:
    from gatekeeper.dispatch.certs import TlsFiles

log = logging.getLogger("gatekeeper")

SITE_HELP = (
    "Site file (YAML). Only its 'gerrit' section is required: host, port, user, key, "
    "known_hosts. Default: ./gatekeeper.yaml if it exists."
)


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if verbose < 2:
        # gear and paramiko are chatty at INFO about things an operator never needs.
        logging.getLogger("gear").setLevel(logging.WARNING)
        logging.getLogger("paramiko").setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatekeeper")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """gatekeeper: every approved Gerrit change tested on a fresh node, merged only if it passes.

    \b
    Quick start:
      gatekeeper sandbox          watch a change go through a local Gerrit simulator
      gatekeeper run -c FILE      run the whole daemon against your Gerrit
      gatekeeper validate         check layout.yaml
    """
    ctx.obj = {"verbose": verbose}


ALL_COMPONENTS = frozenset({"gearman", "scheduler", "worker", "pool"})


def _serve(site_path: Path | None, components: frozenset[str], verbose: int) -> None:
    from gatekeeper.app import Gatekeeper
    from gatekeeper.gerrit.connection import GerritConnection
    from listeners.gerrit import GerritListener

    try:
        site = load_local_site(site_path)
        if site.gerrit is None and components & {"scheduler", "worker"}:
            raise ConfigError(
                "no Gerrit configured: write a site file with a 'gerrit' section "
                "(see README) and pass it with -c, or try 'gatekeeper sandbox'"
            )
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    _setup_logging(verbose)
    try:
        listener = None
        if "scheduler" in components and site.gerrit is not None:
            listener = GerritListener(GerritConnection(site.gerrit))
        # The web runs in the all-in-one; a split site runs `gatekeeper web`.
        app = Gatekeeper(
            site, listener=listener, components=components, serve_web=components >= ALL_COMPONENTS
        )
        app.start()
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    terminate = threading.Event()
    reload = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        terminate.set()
        wake.set()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        reload.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    pidfile = _pidfile(site.state_dir, components)
    pidfile.write_text(f"{os.getpid()}\n")
    log.info(
        "gatekeeper running (%s), pid %d; Ctrl-C stops it, SIGHUP reloads %s",
        ", ".join(sorted(components)),
        os.getpid(),
        site.layout,
    )
    try:
        while not terminate.is_set():
            wake.wait(1.0)
            wake.clear()
            if reload.is_set() and not terminate.is_set():
                reload.clear()
                log.info("SIGHUP: reloading %s", site.layout)
                app.reconfigure()
    finally:
        pidfile.unlink(missing_ok=True)
        app.stop()


def _pidfile(state_dir: Path, components: frozenset[str]) -> Path:
    """Where a daemon of these components records its pid, for ``gatekeeper reconfigure``."""
    role = "gatekeeper" if components >= {"scheduler", "worker"} else "-".join(sorted(components))
    return state_dir / f"{role}.pid"


site_option = click.option(
    "-c",
    "--config",
    "site_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=SITE_HELP,
)


@main.command()
@site_option
@click.pass_context
def run(ctx: click.Context, site_path: Path | None) -> None:
    """Run everything in one process against a real Gerrit.

    Listener, scheduler, embedded Gearman, workers and the node pool, on the
    defaults: ./layout.yaml, SQLite at ./state/gatekeeper.db, Gearman on
    127.0.0.1:4730, the 'local' provider under ./state/nodes, logs under
    ./state/logs.
    """
    _serve(site_path, frozenset({"gearman", "scheduler", "worker", "pool"}), ctx.obj["verbose"])


@main.command()
@site_option
@click.pass_context
def web(ctx: click.Context, site_path: Path | None) -> None:
    """Serve the web on its own (a split site): status, builds, logs, nodes.

    It reads the site's database and asks the scheduler for the live state
    over Gearman (the ``status`` operator request, which needs no token).
    Listens on ``web.listen`` (127.0.0.1:8080 unless set).
    """
    from gatekeeper.db.engine import Database
    from gatekeeper.dispatch.admin import call
    from gatekeeper.dispatch.tokens import read_secret
    from gatekeeper.web.app import make_app
    from gatekeeper.web.context import WebContext
    from gatekeeper.web.server import WebServer

    try:
        site = load_local_site(site_path)
        # The status request goes over Gearman with the operator certificate.
        tls = _operator_tls(site)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    _setup_logging(ctx.obj["verbose"])
    servers = [(s.host, s.port) for s in site.gearman.client_servers]

    def live() -> Mapping[str, object]:
        answer = call(servers, "status", {}, timeout=5, tls=tls)
        if not isinstance(answer, dict):
            raise ConfigError("the scheduler's status answer is not an object")
        return answer

    def operate(function: str, args: Mapping[str, object], token: str) -> object:
        # Over Gearman with the user's token: the scheduler checks and audits it.
        return call(servers, function, args, timeout=30, token=token, tls=tls)

    secret = None
    assert site.admin.secret_file is not None  # resolve() sets it
    try:
        secret = read_secret(site.admin.secret_file)
    except ConfigError as exc:
        # A web without the secret cannot check a token: read-only.
        log.warning("web: no sign-in (read-only): %s", exc)
    db = Database(site.database)
    context = WebContext(
        site=site, db=db, live=live, base_url=site.web.url, secret=secret, operate=operate
    )
    server = WebServer(make_app(context), site.web.listen.host, site.web.listen.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"web: {server.url}")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        db.dispose()


@main.command()
@site_option
@click.pass_context
def scheduler(ctx: click.Context, site_path: Path | None) -> None:
    """Run only the listener and scheduler (and the embedded Gearman server
    unless the site file lists external servers)."""
    _serve(site_path, frozenset({"gearman", "scheduler"}), ctx.obj["verbose"])


@main.command()
@site_option
@click.pass_context
def worker(ctx: click.Context, site_path: Path | None) -> None:
    """Run only build workers: they take builds from the site's Gearman servers
    and claim nodes from the shared database."""
    _serve(site_path, frozenset({"worker"}), ctx.obj["verbose"])


@main.group(invoke_without_command=True)
@site_option
@click.pass_context
def pool(ctx: click.Context, site_path: Path | None) -> None:
    """Run only the node pool: keep min-ready nodes per label, delete used
    ones, expire holds, reap, build daily images. 'gatekeeper pool status'
    shows it instead."""
    ctx.obj["site_path"] = site_path
    if ctx.invoked_subcommand is None:
        _serve(site_path, frozenset({"pool"}), ctx.obj["verbose"])


@pool.command("status")
@site_option
@click.pass_context
def pool_status(ctx: click.Context, site_path: Path | None) -> None:
    """Per label and provider: ready, building, in use, held, waiting demand, capacity."""
    show_pool_status(site_path or ctx.obj.get("site_path"))


@main.command()
@click.argument(
    "layout",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("layout.yaml"),
)
@click.option(
    "--no-includes",
    is_flag=True,
    help="Skip 'includes:' (python-file parameter functions) and check the rest.",
)
@site_option
def validate(layout: Path, no_includes: bool, site_path: Path | None) -> None:
    """Check a layout file (default ./layout.yaml); print every error with its
    file, line and key, and exit non-zero if there is any. On success, print
    how many pipelines, projects, templates and jobs it has. With -c, check it
    against that site file too (its smtp reporters need the site's smtp; jobs
    with swift targets on a site without swift are warned of)."""
    from gatekeeper.config.layout import load_layout
    from gatekeeper.config.loader import load_site
    from gatekeeper.scheduler.mail import check_layout
    from gatekeeper.scheduler.swift import unsigned_targets

    try:
        loaded = load_layout(layout, includes=not no_includes)
        if site_path is not None:
            site = load_site(site_path, Path.cwd())
            errors = check_layout(loaded, site.smtp)
            if errors:
                raise ConfigError(errors)
            for line in unsigned_targets(loaded) if site.swift is None else []:
                click.echo(f"warning: {line}", err=True)
    except ConfigError as exc:
        for line in exc.errors:
            click.echo(line, err=True)
        sys.exit(1)
    click.echo(f"{layout}: OK ({loaded.counts()})")
    from datetime import UTC, datetime

    from gatekeeper.scheduler.timer import schedule

    # When each timer fires: a dry run of the clock, as `route` is of events.
    for line in schedule(loaded, datetime.now(UTC)):
        click.echo(f"  {line}")


@main.command()
@click.option(
    "--serve",
    is_flag=True,
    help="Keep running after the demo so you can push and approve changes by hand.",
)
@click.option(
    "--state",
    "state",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("state/sandbox"),
    show_default=True,
    help="Where the sandbox keeps everything (wiped at start).",
)
@click.option(
    "--layout",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("layout.yaml"),
    show_default=True,
)
@click.option(
    "--web-port",
    type=int,
    default=8080,
    show_default=True,
    help="Port of the sandbox's web on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--gerrit-version",
    default="3.11.1",
    show_default=True,
    help="The Gerrit the simulator plays: any 3.x, or 2.13 (the older JSON dialect).",
)
def sandbox(serve: bool, state: Path, layout: Path, web_port: int, gerrit_version: str) -> None:
    """Start a local Gerrit simulator with the eight projects of the original
    gate and the whole daemon, push a change to nova, approve it, and show each
    step until it merges. Exits 0 when the change merged."""
    from gatekeeper.sandbox.demo import Demo

    logging.getLogger("gear").setLevel(logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    from gatekeeper.sandbox.gerrit_sim.state import dialect_of

    try:
        dialect_of(gerrit_version)
    except GatekeeperError as exc:
        raise click.BadParameter(str(exc), param_hint="--gerrit-version") from exc
    sys.exit(Demo(state, layout, web_port=web_port, gerrit_version=gerrit_version).run(serve))


@main.command()
@site_option
def reconfigure(site_path: Path | None) -> None:
    """Reload the layout in the running daemons of this site (SIGHUP).

    Checks the layout first and changes nothing if it has errors. Queued
    changes stay queued; builds of jobs the new layout no longer runs are
    cancelled. The daemons are found by the pid files in the site's state
    directory.
    """
    from gatekeeper.config.layout import validate_layout_file

    try:
        site = load_local_site(site_path)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    errors = validate_layout_file(site.layout)
    if errors:
        for line in errors:
            click.echo(line, err=True)
        raise click.ClickException(f"{site.layout} has errors: nothing was reloaded")
    signalled = []
    for pidfile in sorted(site.state_dir.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            click.echo(f"{pidfile}: no running daemon ({exc})", err=True)
            continue
        signalled.append(f"{pidfile.stem} (pid {pid})")
    if not signalled:
        raise click.ClickException(f"no running gatekeeper found in {site.state_dir}")
    click.echo(f"reloading {site.layout} in {', '.join(signalled)}")


#: How long the token the CLI makes for a local user lives: one command.
LOCAL_TOKEN_LIFETIME = 300.0
# Recent audit entries `gatekeeper status` shows.
STATUS_AUDIT = 20


def _token_file() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "gatekeeper" / "token"


def _local_user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def _find_token(site: SiteConfig, given: str | None) -> str | None:
    """The operator token for a request: ``--token`` (or GATEKEEPER_TOKEN),
    else the token file, else one made here for the local user when this
    user can read the site's secret (who can read it owns the daemon
    anyway); None when there is none."""
    from gatekeeper.dispatch.tokens import mint, read_secret

    if given:
        return given.strip()
    path = _token_file()
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    secret_file = site.admin.secret_file
    if secret_file is None or not os.access(secret_file, os.R_OK):
        return None
    try:
        secret = read_secret(secret_file)
    except ConfigError as exc:
        log.debug("no local token: %s", exc)
        return None
    return mint(secret, f"local:{_local_user()}", "admin", LOCAL_TOKEN_LIFETIME)


def _operator_tls(site: SiteConfig) -> TlsFiles | None:
    """The operator certificate of the site's TLS directory (None: insecure).

    Never made here: a CA made by the CLI would not be the one the running
    daemon trusts.

    :raises CertificateError: it is missing (says how to make it).
    """
    from gatekeeper.dispatch.certs import Role, TlsFiles

    if site.gearman.insecure:
        return None
    assert site.gearman.tls_dir is not None  # resolved by SiteConfig
    return TlsFiles.for_role(site.gearman.tls_dir, Role.OPERATOR)


def _ask(
    site_path: Path | None,
    function: str,
    args: Mapping[str, object],
    token: str | None = None,
    anonymous: bool = False,
) -> object:
    """Send an operator request to the site's running scheduler; exit 1 if refused.

    ``anonymous``: send it without a token when none can be had (``status``).
    """
    from gatekeeper.dispatch.admin import call

    try:
        site = load_local_site(site_path)
        found = _find_token(site, token)
        if found is None and not anonymous:
            raise TokenError(
                f"{function} needs an operator token: pass --token, set GATEKEEPER_TOKEN, "
                f"or put one in {_token_file()} (an admin makes one with "
                "'gatekeeper admin token --user NAME'); on the scheduler's host, "
                f"a user who can read {site.admin.secret_file} needs none"
            )
        servers = [(s.host, s.port) for s in site.gearman.client_servers]
        return call(servers, function, dict(args), token=found, tls=_operator_tls(site))
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc


token_option = click.option(
    "--token",
    envvar="GATEKEEPER_TOKEN",
    help="Operator token (default: $GATEKEEPER_TOKEN, then ~/.config/gatekeeper/token, "
    "then one made for you if you can read the site's secret).",
)
pipeline_option = click.option("--pipeline", required=True, help="Pipeline name, e.g. gate.")
project_option = click.option("--project", required=True, help="Project, e.g. openstack/nova.")


@main.command()
@site_option
@token_option
@pipeline_option
@project_option
@click.option("--change", required=True, help="NUMBER,PATCHSET of the change (current patchset).")
def enqueue(
    site_path: Path | None, token: str | None, pipeline: str, project: str, change: str
) -> None:
    """Put a change in a pipeline of the running scheduler, as if its trigger
    fired (the pipeline's requirements are not checked). Needs an operator token."""
    args = {"pipeline": pipeline, "project": project, "change": change}
    click.echo(_ask(site_path, "enqueue", args, token))


@main.command()
@site_option
@token_option
@pipeline_option
@project_option
@click.option("--change", required=True, help="NUMBER,PATCHSET of the queued change.")
def dequeue(
    site_path: Path | None, token: str | None, pipeline: str, project: str, change: str
) -> None:
    """Take a change out of a pipeline, stopping its builds, without reporting.
    In a gate, the changes behind it are tested again without it. Needs an
    operator token."""
    args = {"pipeline": pipeline, "project": project, "change": change}
    click.echo(_ask(site_path, "dequeue", args, token))


@main.command()
@site_option
@token_option
@pipeline_option
@click.option(
    "--changes",
    "changes",
    required=True,
    multiple=True,
    help="NUMBER,PATCHSET; repeat, or list several after it, in the order wanted.",
)
@click.argument("more", nargs=-1)
def promote(
    site_path: Path | None,
    token: str | None,
    pipeline: str,
    changes: tuple[str, ...],
    more: tuple[str, ...],
) -> None:
    """Move changes to the head of their gate queues, in the order given; the
    changes behind are tested again on top of them. Needs an operator token."""
    args = {"pipeline": pipeline, "changes": [*changes, *more]}
    click.echo(_ask(site_path, "promote", args, token))


@main.command()
@site_option
@token_option
@click.option("--json", "as_json", is_flag=True, help="Print the full status as JSON.")
def status(site_path: Path | None, token: str | None, as_json: bool) -> None:
    """Show every pipeline's queues: each change, what it is tested with, its
    builds and an estimate of when they finish; and, for an admin, the latest
    operator requests from the audit log. Needs no token (the audit log does)."""
    import json

    result = _ask(site_path, "status", {}, token, anonymous=True)
    assert isinstance(result, dict)
    audit: object = None
    why = ""
    try:
        audit = _ask(site_path, "audit", {"limit": STATUS_AUDIT}, token)
    except click.ClickException as exc:
        why = exc.message
    if as_json:
        click.echo(json.dumps({**result, "audit": audit}, indent=2))
        return
    for pipeline in result["pipelines"]:
        queues = pipeline["queues"]
        click.echo(
            f"{pipeline['name']} ({pipeline['manager']}): "
            + (f"{sum(len(q['items']) for q in queues)} queued" if queues else "empty")
            + _disabled_note(pipeline)
        )
        for queue in queues:
            if pipeline["manager"] == "dependent":
                click.echo(f"  queue {queue['name']} (window {queue['window']})")
            for item in queue["items"]:
                what = item["change"] or item["ref"]
                eta = f", done in ~{item['eta']:.0f}s" if item["eta"] is not None else ""
                state = " FAILING" if item["failing"] else ("" if item["active"] else " waiting")
                builds = ", ".join(
                    f"{b['job']}:{b['result'] or ('running' if b['started_at'] else 'queued')}"
                    for b in item["builds"]
                )
                waiting = ", ".join(
                    f"{shown(job, 100)}:waiting for mutex {shown(mutex, 100)}"
                    for job, mutex in item.get("waiting_for_mutex", {}).items()
                )
                builds = ", ".join(part for part in (builds, waiting) if part)
                click.echo(f"    {item['position'] + 1}. {item['project']} {what}{state}{eta}")
                if builds:
                    click.echo(f"       {builds}")
    if result.get("refused_results"):
        click.echo(
            f"refused build results: {result['refused_results']} "
            "(not from the worker the build was handed to; see the audit log)"
        )
    if not isinstance(audit, list):
        click.echo(f"audit log: not shown ({shown(why)})")
        return
    click.echo(f"audit log, latest {len(audit)}:")
    for entry in audit:
        click.echo("  " + _audit_line(entry))


def _disabled_note(pipeline: dict[str, object]) -> str:
    """`` DISABLED ...`` for a pipeline that disabled itself, else ''."""
    if not pipeline.get("disabled"):
        return ""
    return (
        f" DISABLED after {pipeline.get('consecutive_failures')} failures in a row"
        " (reports only through its disabled reporters until a reconfiguration)"
    )


def _audit_line(entry: dict[str, object]) -> str:
    """One audit entry on one line; every field came from outside, so each is shown()."""
    import time

    at = entry.get("at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if isinstance(at, float) else "?"
    role = shown(entry.get("role", ""), 32)
    who = shown(entry.get("actor", ""), 80) + (f" ({role})" if role else "")
    detail = shown(entry.get("detail", ""), 120)
    return (
        f"{when} {who} {shown(entry.get('action', ''), 40)} "
        f"{shown(entry.get('outcome', ''), 16)} {shown(entry.get('target', ''), 120)}"
        + (f": {detail}" if detail else "")
    )


@main.group()
def admin() -> None:
    """Operator tokens: who may enqueue, dequeue and promote."""


@admin.command("token")
@site_option
@click.option("--user", required=True, help="Who the token is for (recorded in the audit log).")
@click.option(
    "--role",
    type=click.Choice(["operator", "admin"]),
    default="operator",
    show_default=True,
    help="operator: enqueue, dequeue, promote; admin: also read the audit log.",
)
@click.option("--expires", default="8h", show_default=True, help="Lifetime: 90m, 8h, 7d...")
def admin_token(site_path: Path | None, user: str, role: str, expires: str) -> None:
    """Print a token signed with the site's secret (admin.secret-file). Run it
    where that file is readable, i.e. as the scheduler's user on its host."""
    from gatekeeper.config.site import parse_duration
    from gatekeeper.dispatch.tokens import mint, read_secret

    try:
        lifetime = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from exc
    try:
        site = load_local_site(site_path)
        assert site.admin.secret_file is not None  # resolve() sets it
        if not site.admin.secret_file.exists():
            raise ConfigError(
                f"{site.admin.secret_file}: no secret yet; the scheduler makes it at its "
                "first start (or set admin.secret-file in the site file)"
            )
        click.echo(mint(read_secret(site.admin.secret_file), user, role, lifetime))
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("events", type=click.File("rb"))
@click.option(
    "--layout",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("layout.yaml"),
    show_default=True,
)
@click.option(
    "--no-includes",
    is_flag=True,
    help="Skip 'includes:' (python-file parameter functions) and route with the rest.",
)
def route(events: IO[bytes], layout: Path, no_includes: bool) -> None:
    """Dry run: where each Gerrit event in EVENTS (a stream-events JSONL file,
    or - for standard input) would go.

    \b
    Prints one JSON line per event:
      {"line": N, "type": ..., "enqueue": [{"pipeline", "project", "change",
       "ref", "jobs", "unchecked"?, "undecided"?}], "rejected"?: [...]}
    "unchecked" lists requirements only Gerrit could decide (votes by others,
    whether the patchset is current); "undecided" lists jobs whose files
    filters need the change's files. A line that cannot be read gives
    {"line": N, "error": ...}. Exits 0 unless the layout does not load.
    """
    from gatekeeper.config.layout import load_layout
    from gatekeeper.scheduler.dryrun import dumps, route_lines

    # Only errors: a dry run's output is its JSON lines.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded = load_layout(layout, includes=not no_includes)
    except GatekeeperError as exc:
        raise click.ClickException(str(exc)) from exc
    for result in route_lines(loaded, events):
        click.echo(dumps(result))


register_pool_commands(main)
register_certs_commands(main)
register_insights_commands(main)

if __name__ == "__main__":  # pragma: no cover
    main()
