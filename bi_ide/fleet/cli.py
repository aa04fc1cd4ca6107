"""``bi-ide`` commands for the fleet domain; ``COMMANDS`` are added to the main group.

``bi-ide agent run`` on every machine; ``workers``, ``alerts``, ``commands`` and ``slo`` read and act
on the fleet through the hub (BI_IDE_HUB) or the store file.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

import click
import polars as pl

from bi_ide import settings
from bi_ide.clikit import Group, db_option, open_store
from bi_ide.errors import ConfigError
from bi_ide.fleet import service as services
from bi_ide.fleet.commands import PAYLOADS, check_payload
from bi_ide.store.fleet import ALERT_STATUSES, COMMAND_STATUSES

WORKER_COLUMNS = ("id", "status", "hostname", "os", "cpu_count", "gpu_count", "cpu_percent", "ram_percent",
                  "disk_percent", "age_s", "alerts", "runs")


def _show(df: pl.DataFrame, as_json: bool, columns=None) -> None:
    if columns:
        df = df.select([c for c in columns if c in df.columns])
    if as_json:
        click.echo(df.write_json())
        return
    with pl.Config(tbl_rows=200, tbl_cols=20, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        click.echo(df)


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token:
        return token
    if token_file:
        if not token_file.is_file():
            raise ConfigError(f"no token file at {token_file}; create a token with `bi-ide token create --role developer`")
        return token_file.read_text().strip()
    return settings.hub_token()


# -- the agent ------------------------------------------------------------------------------------
@click.group(cls=Group)
def agent():
    """The agent that reports this machine to the hub and runs the hub's commands.

    \b
    Example:
      bi-ide agent run --hub http://127.0.0.1:5006 --token-file data/hub.token
    """


HUB = click.option("--hub", default=None, help="The hub's URL (default: $BI_IDE_HUB or http://127.0.0.1:5006).")
TOKEN_FILE = click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                          help="File holding a developer token (default: $BI_IDE_TOKEN or data/hub.token).")
WORKER_ID = click.option("--worker-id", default=None, help="This machine's id at the hub (default: its hostname).")
LABEL = click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label, e.g. gpu=rtx5090.")


def _hub_url(hub: str | None) -> str:
    return (hub or settings.hub_url() or f"http://127.0.0.1:{settings.DEFAULT_PORT}").rstrip("/")


@agent.command("run")
@HUB
@click.option("--token", default=None, help="A developer token (prefer --token-file: `ps` shows arguments).")
@TOKEN_FILE
@WORKER_ID
@LABEL
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 3600), help="Seconds between samples.")
@click.option("--batch-samples", default=1, show_default=True, type=click.IntRange(1, 600),
              help="Samples per batch sent.")
@click.option("--max-batches", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Batches kept while the hub is away; the oldest are dropped beyond it.")
@click.option("--max-backoff", default=10.0, show_default=True, type=click.FloatRange(0.1, 29),
              help="Longest wait between attempts to reach the hub, in seconds.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
def agent_run(hub, token, token_file, worker_id, labels, interval, batch_samples, max_batches, max_backoff, log_level):
    """Register this machine with the hub and send samples until stopped (SIGTERM or Ctrl-C).

    When the hub is away the agent keeps sampling, buffers up to --max-batches batches and sends
    them when the hub is back. Commands queued for this worker run here, one at a time.

    \b
    Example:
      bi-ide agent run --hub http://rtx-box:5006 --token-file ~/.bi-ide/agent.token --label gpu=rtx5090
    """
    import os

    from bi_ide.fleet.agent import Agent
    from bi_ide.fleet.system import Machine
    from bi_ide.hub.client import HubClient

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url, secret = _hub_url(hub), _token(token, token_file)
    if not secret:
        raise ConfigError("no token: pass --token-file (a developer token from `bi-ide token create`)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    child_env = dict(os.environ, BI_IDE_HUB=url, BI_IDE_TOKEN=secret)
    with HubClient(url, secret, timeout_s=10, retries=0) as client:
        machine = Machine()
        try:
            a = Agent(client, machine, worker_id=worker_id, labels=_labels(labels), interval_s=interval,
                      batch_samples=batch_samples, max_batches=max_batches, max_backoff_s=max_backoff,
                      child_env=child_env)
            counters = a.run(stop)
        finally:
            machine.close()
    click.echo(f"agent stopped: {counters.samples} samples, {counters.sent_batches} batches sent, "
               f"{len(a.buffer)} unsent, {counters.dropped_batches} dropped", err=True)


@agent.command("install-service")
@HUB
@TOKEN_FILE
@WORKER_ID
@LABEL
@click.option("--platform", "platform_name", type=click.Choice(["auto", *services.PLATFORMS]), default="auto",
              show_default=True, help="Which service manager to write for.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the definition here instead of its usual place.")
def agent_install_service(hub, token_file, worker_id, labels, platform_name, output):
    """Write a service definition so the agent runs at boot and survives the end of an ssh session:
    a systemd user unit (Linux), a launchd agent (macOS) or a Task Scheduler task (Windows).

    It prints the commands that turn it on. The token stays in --token-file; the definition names the file.

    \b
    Example:
      bi-ide agent install-service --hub http://rtx-box:5006 --token-file ~/.bi-ide/agent.token
    """
    platform_name = services.current_platform() if platform_name == "auto" else platform_name
    token_path = (token_file or settings.token_file()).expanduser().resolve()
    if not token_path.is_file():
        raise ConfigError(f"no token file at {token_path}; put a developer token there first "
                          "(`bi-ide token create --role developer --name agent`)")
    argv = services.agent_argv(_hub_url(hub), token_path, worker_id, _labels(labels))
    svc = services.service(platform_name, argv, settings.project_root())
    if output:
        svc = services.Service(svc.platform, output.expanduser().resolve(), svc.text, svc.enable)
    path = services.write(svc)
    click.echo(f"wrote {path}\nturn it on with:")
    for line in svc.enable:
        click.echo(f"  {line}")


# -- workers ------------------------------------------------------------------------------------
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(cls=Group)
def workers():
    """The fleet's machines: list them, show one, remove one.

    \b
    Example:
      bi-ide workers list
    """


@workers.command("list")
@db_option
@JSON
def workers_list(db, as_json):
    """Every worker with its status (green, yellow, red), latest readings and running runs.

    \b
    Example:
      BI_IDE_HUB=http://127.0.0.1:5006 bi-ide workers list
    """
    with open_store(db) as store:
        _show(store.list_workers(), as_json, WORKER_COLUMNS)


@workers.command("show")
@click.argument("worker_id")
@db_option
def workers_show(worker_id, db):
    """One worker as JSON: its record, latest readings, GPUs and unresolved alerts.

    \b
    Example:
      bi-ide workers show rtx-box
    """
    with open_store(db) as store:
        click.echo(json.dumps(store.get_worker(worker_id), indent=2, default=str))


@workers.command("remove")
@click.argument("worker_id")
@db_option
def workers_remove(worker_id, db):
    """Forget a worker: its record, samples and queued commands (needs an admin token via the hub).

    \b
    Example:
      bi-ide workers remove old-laptop
    """
    with open_store(db) as store:
        store.remove_worker(worker_id)
    click.echo(f"removed worker {worker_id}")


@workers.command("resources")
@db_option
def workers_resources(db):
    """The fleet's totals: workers by status, cores, RAM, GPUs and GPU memory.

    \b
    Example:
      bi-ide workers resources
    """
    with open_store(db) as store:
        click.echo(json.dumps(store.resources(), indent=2))


# -- alerts -------------------------------------------------------------------------------------
@click.group(cls=Group)
def alerts():
    """Alerts raised by the hub's rules: list and acknowledge them.

    \b
    Example:
      bi-ide alerts list --active
    """


@alerts.command("list")
@click.option("--status", type=click.Choice(ALERT_STATUSES), default=None)
@click.option("--active", is_flag=True, help="Only alerts not resolved yet.")
@click.option("--worker", "worker_id", default=None)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@db_option
@JSON
def alerts_list(status, active, worker_id, limit, db, as_json):
    """Alerts, newest first.

    \b
    Example:
      bi-ide alerts list --active
    """
    with open_store(db) as store:
        df = store.list_alerts(status=status, worker_id=worker_id, active=active, limit=limit)
    _show(df, as_json, ("id", "severity", "status", "rule", "worker_id", "message", "opened_at", "resolved_at"))


@alerts.command("ack")
@click.argument("alert_id")
@db_option
def alerts_ack(alert_id, db):
    """Acknowledge an alert (it resolves by itself when its condition clears).

    \b
    Example:
      bi-ide alerts ack 3f2a9c1d0b7e
    """
    with open_store(db) as store:
        alert = store.acknowledge_alert(alert_id)
    click.echo(f"acknowledged {alert['id']}: {alert['message']}")


# -- commands ----------------------------------------------------------------------------------
@click.group("commands", cls=Group)
def commands_group():
    """Work sent to a worker's agent: ping, pipeline, train, stop_run.

    \b
    Example:
      bi-ide commands queue rtx-box pipeline --payload '{"name": "quickstart"}'
    """


@commands_group.command("queue")
@click.argument("worker_id")
@click.argument("kind", type=click.Choice(list(PAYLOADS)))
@click.option("--payload", default="{}", help='JSON object, e.g. \'{"name": "nightly", "params": {"seed": 1}}\'.')
@db_option
def commands_queue(worker_id, kind, payload, db):
    """Queue a command for WORKER_ID's agent; it picks it up within seconds.

    \b
    Payloads:
      ping       {}
      pipeline   {"name": "quickstart", "params": {"seed": 1}}
      train      {"recipe": "small-cpu", "set": {"max_steps": 100}}
      stop_run   {"run_id": "..."}

    \b
    Example:
      bi-ide commands queue rtx-box train --payload '{"recipe": "small-cpu"}'
    """
    try:
        body = json.loads(payload)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--payload") from e
    if not isinstance(body, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    with open_store(db) as store:
        command = store.queue_command(worker_id, kind, check_payload(kind, body))
    click.echo(f"queued {command['id']}: {kind} on {worker_id}")


@commands_group.command("list")
@click.option("--worker", "worker_id", default=None)
@click.option("--status", type=click.Choice(COMMAND_STATUSES), default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@db_option
@JSON
def commands_list(worker_id, status, limit, db, as_json):
    """Commands, newest first, with their status, result and error.

    \b
    Example:
      bi-ide commands list --worker rtx-box
    """
    with open_store(db) as store:
        df = store.list_commands(worker_id=worker_id, status=status, limit=limit)
    _show(df, as_json, ("id", "worker_id", "kind", "status", "error", "created_at", "finished_at"))


@commands_group.command("cancel")
@click.argument("command_id")
@db_option
def commands_cancel(command_id, db):
    """Cancel a command no agent has picked up yet.

    \b
    Example:
      bi-ide commands cancel 3f2a9c1d0b7e
    """
    with open_store(db) as store:
        store.cancel_command(command_id)
    click.echo(f"cancelled {command_id}")


@click.command("slo")
@click.option("--days", default=30.0, show_default=True, type=click.FloatRange(0.01, 366), help="Window.")
@db_option
@JSON
def slo_command(days, db, as_json):
    """The service level objectives: each one's current value and error budget left.

    \b
    Example:
      bi-ide slo --days 7
    """
    with open_store(db) as store:
        rows = store.slos(days * 86_400)
    _show(pl.DataFrame(rows), as_json, ("objective", "target", "current", "budget_left", "good", "total", "met"))


COMMANDS: list = [agent, workers, alerts, commands_group, slo_command]
