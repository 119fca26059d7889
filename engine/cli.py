"""The ``gorch`` command: worker, run-due, demo data, database migrations and the operator UI."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from engine._engine import Engine
from engine._records import PRUNABLE, WorkflowStatus
from engine.config import (
    VERBOSE_ENV,
    ConfigError,
    configure_logging,
    db_url,
    load_app,
    open_store,
)
from engine.errors import GorchError
from engine.resumers import PollingResumer

DB = click.option(
    "--db",
    "db",
    envvar="GORCH_DB_URL",
    default=None,
    help="Database URL [env GORCH_DB_URL; default sqlite:///gorch.db].",
)
APP = click.option(
    "--app",
    "app",
    envvar="GORCH_APP",
    default=None,
    help="Module listing the workflow classes [env GORCH_APP; default: examples].",
)


def _engine(db: str | None, app: str | None, lease: float = 60.0) -> Engine:
    loaded = load_app(app)
    return Engine(
        open_store(db),
        loaded.workflows,
        managers=loaded.managers,
        resumer=PollingResumer(),
        lease=timedelta(seconds=lease),
    )


_VERBOSE = "gorch.verbose"  # key in the root context's meta: the -v count so far


def _count_verbose(ctx: click.Context, _param: click.Parameter, count: int) -> None:
    """Add up ``-v`` wherever it was given (``gorch -v worker -v`` is ``-vv``); set the logging."""
    if ctx.resilient_parsing:  # shell completion: configure nothing
        return
    root = ctx.find_root()
    total = root.meta.get(_VERBOSE, 0) + count
    root.meta[_VERBOSE] = total
    configure_logging(total)


def _verbose_option() -> click.Option:
    return click.Option(
        ["-v", "--verbose"],
        count=True,
        expose_value=False,
        callback=_count_verbose,
        help="More logging (-v info, -vv debug); before or after the command.",
    )


class _Group(click.Group):
    """A command group whose commands, and its subgroups' commands, all take ``-v``."""

    group_class = type  # `@main.group()` makes a _Group too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_verbose_option())

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "verbose" for p in cmd.params):
            cmd.params.append(_verbose_option())
        super().add_command(cmd, name)


def _verbosity() -> int:
    """How many ``-v`` the running ``gorch`` command got (0 outside one)."""
    ctx = click.get_current_context(silent=True)
    return 0 if ctx is None else int(ctx.find_root().meta.get(_VERBOSE, 0))


@click.group(cls=_Group)
def main() -> None:
    """gorch: durable workflows in your own database."""
    # `--app myapp.workflows` names a module of the directory gorch runs in, as `python -m`
    # finds one; the `gorch` script's sys.path starts at its bin directory instead.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


@main.command()
@DB
@APP
@click.option("--poll", default=0.5, show_default=True, help="Seconds to sleep when idle.")
@click.option("--batch", default=20, show_default=True, help="Items per poll.")
@click.option(
    "--lease",
    default=60.0,
    show_default=True,
    help="Seconds a crashed worker's workflows stay locked before others take over.",
)
def worker(db: str | None, app: str | None, poll: float, batch: int, lease: float) -> None:
    """Run due timers and workflows until SIGTERM/SIGINT; start as many as you like."""
    from engine._scheduling.worker import run_worker

    engine = _engine(db, app, lease)
    click.echo(f"gorch worker {engine.owner} on {_safe(db_url(db))}", err=True)
    run_worker(engine, poll=poll, batch=batch)


@main.command("run-due")
@DB
@APP
@click.option("--once", is_flag=True, help="One pass, even if more became due meanwhile.")
def run_due(db: str | None, app: str | None, once: bool) -> None:
    """Execute everything due now, then exit (for cron; safe on many machines at once)."""
    from engine._scheduling.worker import renewing_leases

    engine = _engine(db, app)
    total = 0
    with renewing_leases(engine):  # a long step keeps its lease while this runs
        while True:
            n = engine.run_due(100)
            total += n
            if once or n == 0:
                break
    click.echo(f"{total} due item(s) handled")


@main.command()
@DB
@APP
@click.option(
    "--type",
    "type_names",
    multiple=True,
    help="Workflow type to check (repeatable); default: every type of the app.",
)
@click.option(
    "--try",
    "trial",
    is_flag=True,
    help="Also fork each unfinished workflow into the code now (in memory, steps skipped, "
    "nothing written) and run it until it blocks; report those that would fail or move.",
)
def check(db: str | None, app: str | None, type_names: tuple[str, ...], trial: bool) -> None:
    """Check stored workflows against the code now; exit 1 if a deploy would break any."""
    from engine._compat import check_compatibility
    from engine._trial import trial_run

    loaded = load_app(app)
    store = open_store(db)
    by_name = {w.workflow_type(): w for w in loaded.workflows}
    unknown = [t for t in type_names if t not in by_name]
    if unknown:
        raise ConfigError(
            f"unknown workflow type(s) {', '.join(unknown)}; the app has "
            f"{', '.join(sorted(by_name))}"
        )
    broken = 0
    for name in type_names or sorted(by_name):
        report = check_compatibility(by_name[name], store)
        click.echo(report.summary())
        broken += len(report.broken)
    if trial:  # the same code over the same store, in sandboxes that write nothing
        engine = Engine(store, loaded.workflows, resumer=PollingResumer())
        for name in type_names or sorted(by_name):
            tried = trial_run(engine, name)
            click.echo(tried.summary())
            broken += len(tried.problems)
    if broken:
        raise SystemExit(1)


AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def age(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    """Parse ``--older-than``: a whole number and a unit, ``90m``, ``12h``, ``30d``, ``2w``.

    Raises:
        click.BadParameter: anything else, or an age reaching back past the year 1.
    """
    found = re.fullmatch(r"\s*(\d{1,9})\s*([smhdw])\s*", value)
    if found is None:
        raise click.BadParameter(f"{value!r} is not an age like 90m, 12h, 30d or 2w")
    try:
        delta = timedelta(**{AGE_UNITS[found[2]]: int(found[1])})
        datetime.now(UTC) - delta  # the cut-off must be a date, refused here if not
    except OverflowError:
        raise click.BadParameter(f"{value!r} reaches further back than dates go") from None
    return delta


@main.command()
@DB
@click.option(
    "--older-than",
    "older_than",
    callback=age,
    required=True,
    help="Remove workflows that ended longer ago than this: 90m, 12h, 30d, 2w.",
)
@click.option(
    "--type", "type_names", multiple=True, help="Only this workflow type (repeatable); default all."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in WorkflowStatus if s in PRUNABLE]),
    help="Only this status (repeatable); default finished and cancelled. Failed ones are kept "
    "unless named.",
)
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Workflows deleted per transaction.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Delete nothing; say what would be deleted.")
def prune(
    db: str | None,
    older_than: timedelta,
    type_names: tuple[str, ...],
    statuses: tuple[str, ...],
    batch: int,
    dry_run: bool,
) -> None:
    """Delete ended workflows with their waits and history (retention; for cron).

    Never a running or waiting workflow, nor one a process holds. Safe to run while workers run.
    """
    engine = Engine(open_store(db), resumer=PollingResumer())  # no app: types may be long gone
    before = engine.clock.now() - older_than
    result = engine.prune(
        before,
        types=type_names or None,
        statuses=statuses or (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED),
        batch=batch,
        dry_run=dry_run,
    )
    click.echo(f"{result} (ended before {before:%Y-%m-%d %H:%M:%S} UTC)")


@main.command()
@DB
def demo(db: str | None) -> None:
    """Seed the database with the bundled example workflows in every state."""
    from engine.examples import WORKFLOWS
    from engine.examples.demo import seed_demo

    engine = Engine(open_store(db), WORKFLOWS, resumer=PollingResumer())
    ids = seed_demo(engine)
    click.echo(f"{len(ids)} demo workflows in {_safe(db_url(db))}")


@main.command(context_settings={"ignore_unknown_options": True})
@DB
@APP
@click.option("--port", type=int, default=None, help="Port to serve on [default: 8501].")
@click.option("--headless", is_flag=True, help="Do not open a browser (servers, containers).")
@click.argument("streamlit_args", nargs=-1, type=click.UNPROCESSED)
def ui(
    db: str | None, app: str | None, port: int | None, headless: bool, streamlit_args: Sequence[str]
) -> None:
    """Open the operator UI (streamlit run gorch_ui) on the database and app given.

    Extra arguments go to streamlit run (e.g. --server.address 0.0.0.0).
    """
    cmd, env = ui_command(
        db, app, port=port, headless=headless, verbose=_verbosity(), extra=streamlit_args
    )
    click.echo(f"gorch ui on {_safe(db_url(db))}", err=True)
    if os.name == "posix":
        os.execve(cmd[0], cmd, env)  # Streamlit takes this process over: signals reach it
    sys.exit(subprocess.call(cmd, env=env))


def ui_command(
    db: str | None,
    app: str | None,
    *,
    port: int | None = None,
    headless: bool = False,
    verbose: int = 0,
    extra: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment of ``gorch ui``.

    Streamlit's usage statistics and its first-run email prompt are off (``extra`` may turn
    the statistics on again: the last ``--browser.gatherUsageStats`` wins), and its toolbar
    is the minimal one, with no "Deploy" button. ``verbose`` (the
    ``-v`` count) goes to the app as ``GORCH_VERBOSE``: gorch's INFO or DEBUG lines.

    Raises:
        click.ClickException: Streamlit (the ``ui`` extra) or the app package is missing.
    """
    if importlib.util.find_spec("streamlit") is None:
        raise click.ClickException(
            "the operator UI needs Streamlit, which is not installed: pip install 'gorch[ui]'"
        )
    spec = importlib.util.find_spec("gorch_ui")
    if spec is None or spec.origin is None:
        raise click.ClickException("the gorch_ui package is missing: reinstall gorch")
    env = dict(os.environ)
    # On a desktop (not headless), Streamlit's first run stops to ask for an email address.
    env.setdefault("STREAMLIT_SERVER_SHOW_EMAIL_PROMPT", "false")
    if db:
        env["GORCH_DB_URL"] = db
    if app:
        env["GORCH_APP"] = app
    if verbose:
        env[VERBOSE_ENV] = str(verbose)
    cmd = [sys.executable, "-m", "streamlit", "run", str(Path(spec.origin).parent)]
    if port is not None:
        cmd += ["--server.port", str(port)]
    if headless:
        cmd += ["--server.headless", "true"]
    cmd += ["--browser.gatherUsageStats", "false"]
    # An operator's toolbar, from any directory (.streamlit/config.toml says the same for
    # `streamlit run gorch_ui` in a checkout): no "Deploy" button.
    cmd += ["--client.toolbarMode", "minimal"]
    return [*cmd, *extra], env


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@DB
def upgrade(db: str | None) -> None:
    """Apply the schema migrations (also done automatically when a store opens)."""
    from engine.store.sql import upgrade as do_upgrade

    do_upgrade(db_url(db))
    click.echo(f"schema of {_safe(db_url(db))} is up to date")


def _safe(url: str) -> str:
    """``url`` without its password, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def run() -> None:
    """Entry point: turn gorch errors into a message and exit status 2."""
    try:
        main(standalone_mode=True)
    except (GorchError, ConfigError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
