"""``bi-ide``: the workbench from the shell. A thin layer over the package.

Every command turns a workbench error into one line on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import polars as pl

import bi_ide
from bi_ide import settings
from bi_ide.clikit import Group, db_option, open_store
from bi_ide.errors import ServeError, WorkbenchError
from bi_ide.store import ROLES, RUN_STATUSES, Store


def _show(df: pl.DataFrame, as_json: bool) -> None:
    if as_json:
        click.echo(df.write_json())
        return
    with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=40, tbl_hide_dataframe_shape=True):
        click.echo(df)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(bi_ide.__version__, prog_name="bi-ide")
def main():
    """BI-IDE Workbench: train, watch the fleet, ask the council, read the business numbers.

    \b
    Example:
      bi-ide init && bi-ide serve
    """


# -- set-up and serving -------------------------------------------------------------------
@main.command()
@db_option
def init(db):
    """Create or upgrade the store and a local admin token in data/hub.token.

    Safe to run again: it applies only pending migrations and keeps an existing token.

    \b
    Example:
      bi-ide init
    """
    path = db or settings.db_path()
    with Store(path) as store:
        click.echo(f"store   {path} (schema version {store.schema_version()})")
        token_file = settings.token_file(path)
        if token_file.is_file() and _token_works(store, token_file.read_text().strip()):
            click.echo(f"token   {token_file} (kept)")
            return
        _, secret = store.create_token(f"local admin on {socket.gethostname()}", "admin")
    _write_secret(token_file, secret)
    click.echo(f"token   {token_file} (new admin token, readable by you only)")


def _token_works(store: Store, secret: str) -> bool:
    try:
        store.verify_token(secret)
    except WorkbenchError:
        return False
    return True


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.replace(tmp, path)


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=settings.DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@db_option
@click.option("--basic-auth", default=None, help="Dashboard password, or a JSON file of user: password (Panel).")
@click.option("--cookie-secret", default=None, envvar="BI_IDE_COOKIE_SECRET", help="Secret for auth cookies.")
@click.option("--oauth-provider", default=None, help="Panel OAuth provider (github, google, azure, generic, ...).")
@click.option("--rate-limit", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="API requests per second per token (token bucket refill).")
@click.option("--burst", default=100, show_default=True, type=click.IntRange(min=1),
              help="API requests a token may send at once.")
@click.option("--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Largest API request body.")
@click.option("--allow-origin", "origins", multiple=True, help="Extra host:port allowed to open the dashboards.")
@click.option("--dev", is_flag=True, help="Reload the dashboards when their files change.")
@click.option("--with-agent", is_flag=True,
              help="Also run the fleet agent for this machine (bi-ide agent run, with the local token); it stops "
                   "with the hub.")
@click.option("--dry-run", is_flag=True, help="Print the panel command and exit.")
def serve(address, port, db, basic_auth, cookie_secret, oauth_provider, rate_limit, burst, max_body_mb,
          origins, dev, with_agent, dry_run):
    """Serve the hub: the dashboards and the REST API, owning the store file.

    Binds to 127.0.0.1 unless told otherwise. A network address serves the whole fleet, so it is
    refused unless API tokens exist and the dashboards are behind --basic-auth or --oauth-provider.

    \b
    Example:
      bi-ide serve --port 5006 --with-agent
      bi-ide serve --address 0.0.0.0 --basic-auth ~/.bi-ide/users.json --cookie-secret "$SECRET"
    """
    path = (db or settings.db_path()).resolve()
    apps = sorted((settings.project_root() / "apps").glob("*.py"))
    if not apps:
        raise ServeError(f"no dashboards in {settings.project_root() / 'apps'}; run bi-ide serve from the workbench folder")
    with Store(path) as store:  # migrate now, and fail here (not inside panel) if the file is held
        has_tokens = store.sql("SELECT count(*) AS n FROM api_tokens WHERE revoked_at IS NULL")["n"][0] > 0
    if not _is_loopback(address):
        if not has_tokens:
            raise ServeError(f"refusing to serve {address}: no API tokens exist; create one with `bi-ide token create`")
        if not (basic_auth or oauth_provider):
            raise ServeError(f"refusing to serve {address}: put the dashboards behind --basic-auth or --oauth-provider")
    if (basic_auth or oauth_provider) and not cookie_secret:
        raise ServeError("dashboard auth needs --cookie-secret (or BI_IDE_COOKIE_SECRET) to sign its cookies")
    panel = shutil.which("panel", path=str(Path(sys.executable).parent)) or shutil.which("panel")
    if panel is None:
        raise ServeError("the `panel` command is not installed in this environment; run `make up`")
    args = [panel, "serve", *map(str, apps), "--plugins", "bi_ide.hub.plugin", "--index", "overview",
            "--address", address, "--port", str(port), "--num-procs", "1"]
    for origin in dict.fromkeys((f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", *origins)):
        args += ["--allow-websocket-origin", origin]
    if basic_auth:
        args += ["--basic-auth", basic_auth]
    if oauth_provider:
        args += ["--oauth-provider", oauth_provider]
    if dev:
        args += ["--dev"]
    env = dict(os.environ, BI_IDE_DB=str(path), BI_IDE_RATE_LIMIT=str(rate_limit), BI_IDE_RATE_BURST=str(burst),
               BI_IDE_MAX_BODY_MB=str(max_body_mb))
    env.pop("BI_IDE_HUB", None)  # the hub is the store's owner, never a client of itself
    if cookie_secret:
        env["PANEL_COOKIE_SECRET"] = cookie_secret  # not on the command line, where `ps` shows it
    if dry_run:
        click.echo(" ".join(args))
        return
    click.echo(f"hub     http://{address}:{port}/  (API under /api/v1/, store {path})", err=True)
    if with_agent:
        sys.exit(_serve_with_agent(args, env, address, port, path))
    if os.name == "nt":
        # Windows has no exec: run panel as a child so a service manager sees one long-lived process.
        sys.exit(subprocess.call(args, env=env))
    os.execve(panel, args, env)


def _serve_with_agent(args: list[str], env: dict, address: str, port: int, db: Path) -> int:
    """Run the hub and this machine's agent as children; when the hub ends, stop the agent. The hub's status."""
    token_file = settings.token_file(db)
    if not token_file.is_file():
        raise ServeError(f"--with-agent needs the local token {token_file}: run `bi-ide init` first")
    host = "127.0.0.1" if address in ("0.0.0.0", "::", "localhost") else address
    host = f"[{host}]" if ":" in host else host
    agent_args = [sys.executable, "-m", "bi_ide.cli", "agent", "run", "--hub", f"http://{host}:{port}",
                  "--token-file", str(token_file), "--log-level", "warning"]
    agent_env = {k: v for k, v in os.environ.items() if k not in ("BI_IDE_DB", "BI_IDE_HUB", "BI_IDE_TOKEN")}
    hub = subprocess.Popen(args, env=env)
    signal.signal(signal.SIGTERM, lambda *_: hub.terminate())  # a service manager's stop ends both
    # The agent starts once the hub answers: its attempts before would count against the hub's
    # availability objective (an agent that finds the hub away buffers and retries anyway).
    _wait_for_health(f"http://{host}:{port}/api/v1/health", hub)
    agent = subprocess.Popen(agent_args, env=agent_env)
    click.echo(f"agent   this machine reports to the hub (pid {agent.pid})", err=True)
    try:
        while True:
            try:
                return hub.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the hub too: wait for it to finish
                continue
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()


def _wait_for_health(url: str, hub: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Until ``url`` answers (or the hub exits, or ``timeout_s`` passes)."""
    import requests

    deadline = time.monotonic() + timeout_s
    while hub.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# -- the store --------------------------------------------------------------------------
@main.group(cls=Group)
def db():
    """The store file: migrate, inspect, back up and restore."""


@db.command()
@db_option
@click.option("--to", "target", type=int, default=None, help="Stop at this schema version.")
def migrate(db, target):
    """Apply pending schema migrations, each in one transaction.

    \b
    Example:
      bi-ide db migrate
    """
    with Store(db or settings.db_path(), migrate=False) as store:
        applied = store.migrate(target)
        version = store.schema_version()
    click.echo(f"applied {applied or 'nothing'}; schema version {version}")


@db.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(db, as_json):
    """Show the store's size, schema version and counts (through the hub when BI_IDE_HUB is set).

    \b
    Example:
      bi-ide db info
    """
    with open_store(db) as store:
        summary = store.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        click.echo(f"{key:15} {value}")


@db.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@db_option
def backup(path, db):
    """Copy the whole store into a new DuckDB file at PATH.

    With BI_IDE_HUB set, the hub writes the backup into backups/ beside its store, named like PATH.

    \b
    Example:
      bi-ide db backup data/backups/2026-11-25.duckdb
    """
    with open_store(db) as store:
        dest = store.backup(path)
    click.echo(f"backup  {dest}")


@db.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.option("--yes", is_flag=True, help="Do not ask before replacing the store.")
def restore(path, db, yes):
    """Replace the store with the backup at PATH (stop the hub first).

    \b
    Example:
      bi-ide db restore data/backups/2026-11-25.duckdb --yes
    """
    target = db or settings.db_path()
    if target.exists() and not yes:
        click.confirm(f"replace {target} with {path}?", abort=True)
    Store.restore(path, target)
    click.echo(f"restored {target} from {path}")


# -- tokens -----------------------------------------------------------------------------
@main.group(cls=Group)
def token():
    """API tokens for the hub, each with a role: viewer, developer or admin."""


@token.command("create")
@click.option("--name", required=True, help="Who or what uses it, e.g. 'rtx5090 agent'.")
@click.option("--role", type=click.Choice(ROLES), default="developer", show_default=True)
@db_option
def token_create(name, role, db):
    """Create a token and print its secret once (only its hash is stored).

    \b
    Example:
      bi-ide token create --name "laptop agent" --role developer
    """
    with open_store(db) as store:
        token_id, secret = store.create_token(name, role)
    click.echo(f"token {token_id} ({role}) created; keep the secret, it is not shown again:", err=True)
    click.echo(secret)


@token.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(db, as_json):
    """List tokens (never their secrets).

    \b
    Example:
      bi-ide token list
    """
    with open_store(db) as store:
        _show(store.list_tokens(), as_json)


@token.command("revoke")
@click.argument("token_id")
@db_option
def token_revoke(token_id, db):
    """Revoke a token by id; it stops working at once.

    \b
    Example:
      bi-ide token revoke 3f9a0c1d2e4b
    """
    with open_store(db) as store:
        store.revoke_token(token_id)
    click.echo(f"revoked {token_id}")


# -- runs -------------------------------------------------------------------------------
@main.group(cls=Group)
def runs():
    """Training runs recorded in the store (pipeline runs: `bi-ide pipeline runs`)."""


@runs.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_list(status, limit, db, as_json):
    """List runs, newest first.

    \b
    Example:
      bi-ide runs list --status running
    """
    with open_store(db) as store:
        df = store.list_runs(status=status, limit=limit)
    _show(df.select("id", "name", "kind", "status", "preset", "created_at", "finished_at"), as_json)


def _register_groups() -> None:
    from bi_ide.pipelines.cli import pipeline
    from bi_ide.training.data_cli import data
    from bi_ide.training.train_cli import models, sample, train

    for command in (data, train, models, sample, pipeline):
        main.add_command(command)
    for domain in ("fleet", "council", "erp"):
        for command in importlib.import_module(f"bi_ide.{domain}.cli").COMMANDS:
            main.add_command(command)


_register_groups()

if __name__ == "__main__":
    main()
