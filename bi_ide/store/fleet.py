"""The fleet tables: workers, their samples, alerts, commands, SLOs and the thermal guard's record.

A mixin of Store: the methods use its cursor and transactions. Samples arrive in keyed batches;
a key already in ``write_batches`` is skipped, so an agent resending its backlog stores nothing twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl

from bi_ide.errors import ConflictError, NotFoundError, ValidationError
from bi_ide.fleet import samples as wire
from bi_ide.fleet import slo
from bi_ide.store.values import check_text, new_id, to_json

ALERT_STATUSES = ("open", "acknowledged", "resolved")
SEVERITIES = ("info", "warning", "error", "critical")
COMMAND_KINDS = ("ping", "pipeline", "train", "stop_run")
COMMAND_STATUSES = ("queued", "running", "done", "failed", "cancelled")
# Worker colours: silent longer than YELLOW_S is yellow, longer than RED_S red (the alert's threshold).
YELLOW_S, RED_S = 10.0, 30.0
MAX_PAYLOAD_CHARS = 20_000
SERIES_POINTS = 600  # at most this many points per GPU in a time series


class FleetTables:
    """Store methods for workers, their samples, alerts, commands and SLOs."""

    # -- workers ------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, *, hostname: str, os: str | None = None, platform: str | None = None,
                        cpu_count: int | None = None, ram_bytes: int | None = None, gpus: list | None = None,
                        labels: dict | None = None, agent_version: str | None = None) -> dict:
        """Add the worker, or refresh what it says about itself (an agent registers on every start)."""
        check_text("worker_id", worker_id, 64)
        check_text("hostname", hostname, 255)
        if labels is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValidationError("labels must map text to text, e.g. {\"gpu\": \"rtx5090\"}", field="labels")
        values = [hostname, os, platform, cpu_count, ram_bytes, to_json(gpus or []), to_json(labels or {}),
                  agent_version]
        with self.transaction() as cur:
            cur.execute(
                "INSERT INTO workers (id, hostname, os, platform, cpu_count, ram_bytes, gpus, labels, agent_version, "
                "last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now()) ON CONFLICT (id) DO UPDATE SET "
                "hostname = excluded.hostname, os = excluded.os, platform = excluded.platform, "
                "cpu_count = excluded.cpu_count, ram_bytes = excluded.ram_bytes, gpus = excluded.gpus, "
                "labels = excluded.labels, agent_version = excluded.agent_version, last_seen_at = now()",
                [worker_id, *values],
            )
        return self.get_worker(worker_id)

    def get_worker(self, worker_id: str) -> dict:
        """A worker with its status, latest sample, GPUs and unresolved alerts."""
        df = self.list_workers().filter(pl.col("id") == worker_id)
        if df.is_empty():
            raise NotFoundError(f"no worker with id {worker_id!r}; `bi-ide workers list` shows them")
        worker = df.row(0, named=True)
        worker["labels"] = json.loads(worker["labels"]) if worker["labels"] else {}
        worker["gpus"] = self.gpu_latest(worker_id).to_dicts()
        worker["alerts"] = self.list_alerts(worker_id=worker_id, active=True).to_dicts()
        return worker

    def list_workers(self) -> pl.DataFrame:
        """Every worker with its colour (green/yellow/red), latest machine sample and what it runs."""
        df = self.sql(
            "WITH latest AS (SELECT * EXCLUDE (bucket_s) FROM worker_samples "
            "  WHERE time > now() - INTERVAL 10 MINUTE "
            "  QUALIFY row_number() OVER (PARTITION BY worker_id ORDER BY time DESC) = 1), "
            "alerting AS (SELECT worker_id, max(CASE severity WHEN 'critical' THEN 2 ELSE 1 END) AS level, "
            "  count(*) AS alerts FROM alerts WHERE status <> 'resolved' GROUP BY worker_id), "
            "running AS (SELECT r.worker_id, string_agg(r.id, ',' ORDER BY r.id) AS runs FROM runs r "
            "  WHERE r.status = 'running' AND r.worker_id IS NOT NULL GROUP BY r.worker_id), "
            "on_host AS (SELECT w.id AS worker_id, string_agg(r.id, ',' ORDER BY r.id) AS runs FROM runs r "
            "  JOIN workers w ON r.host = w.hostname WHERE r.status = 'running' GROUP BY w.id) "
            "SELECT w.id, w.hostname, w.os, w.platform, w.cpu_count, w.ram_bytes, w.labels, w.agent_version, "
            "  w.registered_at, w.last_seen_at, date_diff('millisecond', w.last_seen_at, now()) / 1000.0 AS age_s, "
            "  json_array_length(w.gpus) AS gpu_count, coalesce(a.alerts, 0) AS alerts, "
            "  CASE WHEN w.last_seen_at IS NULL OR date_diff('millisecond', w.last_seen_at, now()) > ? "
            "    OR a.level = 2 THEN 'red' "
            "    WHEN date_diff('millisecond', w.last_seen_at, now()) > ? OR a.level = 1 THEN 'yellow' "
            "    ELSE 'green' END AS status, "
            "  coalesce(h.runs, r.runs) AS runs, "
            "  l.cpu_percent, l.ram_percent, l.ram_used_bytes, l.disk_percent, l.disk_used_bytes, "
            "  l.net_sent_bytes, l.net_recv_bytes, l.load_1m, l.time AS sampled_at "
            "FROM workers w LEFT JOIN latest l ON l.worker_id = w.id LEFT JOIN alerting a ON a.worker_id = w.id "
            "LEFT JOIN running r ON r.worker_id = w.id LEFT JOIN on_host h ON h.worker_id = w.id ORDER BY w.id",
            [RED_S * 1000, YELLOW_S * 1000],
        )
        return df

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker: its record, samples and queued commands; its unresolved alerts are resolved."""
        with self.transaction() as cur:
            hit = cur.execute("DELETE FROM workers WHERE id = ? RETURNING id", [worker_id]).fetchall()
            if not hit:
                raise NotFoundError(f"no worker with id {worker_id!r}; `bi-ide workers list` shows them")
            for table in ("worker_samples", "gpu_samples", "gpu_processes", "worker_reconnects"):
                cur.execute(f"DELETE FROM {table} WHERE worker_id = ?", [worker_id])
            cur.execute("UPDATE worker_commands SET status = 'cancelled', finished_at = now(), "
                        "error = 'the worker was removed' WHERE worker_id = ? AND status = 'queued'", [worker_id])
            cur.execute("UPDATE alerts SET status = 'resolved', resolved_at = now() "
                        "WHERE worker_id = ? AND status <> 'resolved'", [worker_id])

    def resources(self) -> dict:
        """The fleet's totals: workers by colour; cores and RAM of the workers heard from within RED_S
        seconds; GPUs and GPU memory of the GPUs reporting."""
        workers = self.list_workers()
        gpus = self.gpu_latest()
        live = workers.filter(pl.col("age_s") <= RED_S)  # heard from lately, whatever its alerts
        return {
            "workers": workers.height,
            "by_status": {s: int((workers["status"] == s).sum()) for s in ("green", "yellow", "red")},
            "cpu_cores": int(live["cpu_count"].fill_null(0).sum()),
            "ram_bytes": int(live["ram_bytes"].fill_null(0).sum()),
            "ram_used_bytes": int(live["ram_used_bytes"].fill_null(0).sum()),
            "gpus": gpus.height,
            "gpu_memory_bytes": int(gpus["memory_total_bytes"].fill_null(0).sum()),
            "gpu_memory_used_bytes": int(gpus["memory_used_bytes"].fill_null(0).sum()),
            "gpu_utilization_mean": gpus["utilization"].mean(),
        }

    # -- samples ------------------------------------------------------------------------------
    def write_samples(self, worker_id: str, batches: list, *, reconnect: dict | None = None) -> dict:
        """Store an agent's keyed batches in one transaction; batches whose key was applied are skipped.

        ``reconnect`` ({outage_s, reconnect_s, failed_attempts, dropped_batches}) is sent once after
        the hub was away and feeds the reconnect SLO. The answer counts new and duplicate batches,
        the samples stored, and the commands queued for the worker.
        """
        (result,) = self.write_sample_groups([(worker_id, batches, reconnect)])
        if isinstance(result, Exception):
            raise result
        return result

    def write_sample_groups(self, groups: list[tuple[str, list, dict | None]]) -> list:
        """Several agents' ``write_samples`` in one transaction (the hub groups concurrent requests).

        Returns, per group, its answer or the error that refused it (bad input, unknown worker);
        one group's error leaves the others stored.
        """
        results: list = [None] * len(groups)
        ok: list[tuple[int, str, list[wire.Batch], list | None]] = []
        for i, (worker_id, batches, reconnect) in enumerate(groups):
            try:
                ok.append((i, worker_id, wire.parse_batches(batches), _reconnect(reconnect) if reconnect else None))
            except ValidationError as e:
                results[i] = e
        if not ok:
            return results
        with self.transaction() as cur:
            hosts = dict(cur.execute("UPDATE workers SET last_seen_at = now() WHERE list_contains(?, id) "
                                     "RETURNING id, hostname", [sorted({g[1] for g in ok})]).fetchall())
            for i, worker_id, _, _ in ok:
                if worker_id not in hosts:
                    results[i] = NotFoundError(f"no worker with id {worker_id!r}: register it first (the agent does on start)")
            ok = [g for g in ok if g[1] in hosts]
            first: dict[str, tuple[int, wire.Batch]] = {}  # a key twice in one round counts once
            for i, worker_id, batches, _ in ok:
                for b in batches:
                    first.setdefault(f"{worker_id}:{b.key}", (i, b))
            # The keys not applied before come back; their batches are the ones to store.
            new = {k for (k,) in cur.execute(
                "INSERT INTO write_batches (key, kind, rows) SELECT unnest(?::VARCHAR[]), 'fleet', unnest(?::BIGINT[]) "
                "ON CONFLICT DO NOTHING RETURNING key", [list(first), [len(b.machine) for _, b in first.values()]]
            ).fetchall()} if first else set()
            fresh: dict[int, list[wire.Batch]] = {g[0]: [] for g in ok}
            for key, (i, b) in first.items():
                if key in new:
                    fresh[i].append(b)
            self._insert_samples(cur, [(g[1], hosts[g[1]], fresh[g[0]]) for g in ok])
            for _, worker_id, _, outage in ok:
                if outage is not None:
                    cur.execute("INSERT INTO worker_reconnects VALUES (?, now(), ?, ?, ?, ?)", [worker_id, *outage])
        queued = dict(self._rows("SELECT worker_id, count(*) FROM worker_commands WHERE status = 'queued' "
                                 "AND list_contains(?, worker_id) GROUP BY 1", [sorted(hosts)])) if ok else {}
        for i, worker_id, batches, _ in ok:
            results[i] = {"batches": len(fresh[i]), "duplicates": len(batches) - len(fresh[i]),
                          "samples": sum(len(b.machine) for b in fresh[i]), "queued_commands": queued.get(worker_id, 0)}
        return results

    @staticmethod
    def _insert_samples(cur, groups: list[tuple[str, str, list[wire.Batch]]]) -> None:
        """Insert the rows of (worker_id, hostname, batches); GPU processes map to runs on host and pid."""
        def rows(part: str) -> list[dict]:
            return [{**r, "worker_id": w, "hostname": h} for w, h, batches in groups for b in batches
                    for r in getattr(b, part)]

        machine = rows("machine")
        if not machine:
            return
        running = "(SELECT id AS run_id, host, pid, started_at FROM runs WHERE status = 'running' AND host IS NOT NULL)"
        inserts = (
            ("_machine", machine, wire.MACHINE,
             "INSERT INTO worker_samples BY NAME SELECT m.* EXCLUDE (hostname), r.run_id FROM _machine m "
             f"LEFT JOIN (SELECT host, arg_max(run_id, started_at) AS run_id FROM {running} GROUP BY host) r "
             "ON r.host = m.hostname"),
            ("_gpus", rows("gpus"), wire.GPU,
             "INSERT INTO gpu_samples BY NAME SELECT g.* EXCLUDE (index, hostname), g.index AS gpu_index FROM _gpus g"),
            ("_procs", rows("processes"), wire.PROCESS,
             "INSERT INTO gpu_processes BY NAME SELECT p.* EXCLUDE (hostname), r.run_id FROM _procs p "
             f"LEFT JOIN {running} r ON r.host = p.hostname AND r.pid = p.pid"),
        )
        for name, part, spec, insert in inserts:
            if not part:  # a machine without GPUs: no statement for them
                continue
            cur.register(name, wire.table(part, {**wire.ORIGIN, **spec}))
            try:
                cur.execute(insert)
            finally:
                cur.unregister(name)

    def count_samples(self, worker_id: str | None = None) -> dict:
        """Raw sample rows stored (all, or one worker's): machine readings, GPU readings, distinct times."""
        (machine, distinct, gpu), = self._rows(
            "SELECT count(*), count(DISTINCT time), (SELECT count(*) FROM gpu_samples WHERE bucket_s = 0 "
            "AND (? IS NULL OR worker_id = ?)) FROM worker_samples WHERE bucket_s = 0 AND (? IS NULL OR worker_id = ?)",
            [worker_id, worker_id, worker_id, worker_id])
        return {"machine": machine, "distinct_times": distinct, "gpu": gpu}

    def gpu_latest(self, worker_id: str | None = None) -> pl.DataFrame:
        """The newest reading of every GPU (of one worker), with the runs using it and their GPU memory."""
        return self.sql(
            "WITH latest AS (SELECT * FROM gpu_samples WHERE time > now() - INTERVAL 10 MINUTE "
            "  AND (? IS NULL OR worker_id = ?) "
            "  QUALIFY row_number() OVER (PARTITION BY worker_id, gpu_index ORDER BY time DESC) = 1), "
            "procs AS (SELECT p.worker_id, p.gpu_index, string_agg(coalesce(p.run_id, ''), ',') "
            "  FILTER (WHERE p.run_id IS NOT NULL) AS runs, count(*) AS processes FROM gpu_processes p "
            "  JOIN latest l ON l.worker_id = p.worker_id AND l.gpu_index = p.gpu_index AND l.time = p.time "
            "  GROUP BY ALL) "
            "SELECT l.worker_id, l.gpu_index, l.name, l.utilization, l.memory_used_bytes, l.memory_total_bytes, "
            "  l.temperature_c, l.power_w, l.power_limit_w, l.sm_clock_mhz, l.mem_clock_mhz, l.throttle_reasons, "
            "  l.fan_percent, l.pcie_tx_kbps, l.pcie_rx_kbps, l.time, coalesce(p.processes, 0) AS processes, p.runs "
            "FROM latest l LEFT JOIN procs p USING (worker_id, gpu_index) ORDER BY l.worker_id, l.gpu_index",
            [worker_id, worker_id],
        )

    def gpu_processes(self, worker_id: str) -> pl.DataFrame:
        """The processes on a worker's GPUs at its newest sample, with the run each one belongs to."""
        return self.sql(
            "SELECT gpu_index, pid, process_name, memory_used_bytes, run_id, time FROM gpu_processes "
            "WHERE worker_id = ? AND time = (SELECT max(time) FROM gpu_processes WHERE worker_id = ?) "
            "ORDER BY gpu_index, pid", [worker_id, worker_id])

    def gpu_series(self, window_s: int = 900, worker_id: str | None = None) -> pl.DataFrame:
        """Every GPU's readings over the last ``window_s`` seconds, averaged into at most SERIES_POINTS
        buckets per GPU (max for temperature, so a short peak stays visible)."""
        if not 10 <= window_s <= 30 * 86_400:
            raise ValidationError(f"window_s must be 10..2592000 seconds, got {window_s}", field="window_s")
        width_us = max(1_000_000, window_s * 1_000_000 // SERIES_POINTS)
        return self.sql(
            "SELECT worker_id, gpu_index, make_timestamptz(((epoch_us(time) // ?) * ?)::BIGINT) AS time, "
            "  avg(utilization) AS utilization, avg(memory_used_bytes)::BIGINT AS memory_used_bytes, "
            "  max(temperature_c) AS temperature_c, avg(power_w) AS power_w, "
            "  avg(sm_clock_mhz) AS sm_clock_mhz, avg(mem_clock_mhz) AS mem_clock_mhz "
            "FROM gpu_samples WHERE time > now() - to_microseconds(?) AND (? IS NULL OR worker_id = ?) "
            "GROUP BY ALL ORDER BY worker_id, gpu_index, time",
            [width_us, width_us, window_s * 1_000_000, worker_id, worker_id],
        )

    def rollup_samples(self, keep_s: float) -> dict:
        """Average raw samples older than ``keep_s`` seconds into one-minute rows, and forget old batch keys.

        Only whole minutes are rolled up, so running it twice changes nothing the second time.
        """
        if keep_s < 60:
            raise ValidationError(f"keep at least 60 s of full-resolution samples, got {keep_s}", field="keep_s")
        cutoff = _minute(datetime.now(UTC) - timedelta(seconds=keep_s))
        minute = "time_bucket(INTERVAL 1 MINUTE, time)"
        with self.transaction() as cur:
            cur.execute(
                f"INSERT INTO worker_samples SELECT worker_id, {minute}, avg(cpu_percent), avg(ram_percent), "
                "avg(ram_used_bytes)::BIGINT, avg(disk_percent), max(net_sent_bytes), max(net_recv_bytes), "
                "avg(load_1m), any_value(run_id), avg(disk_used_bytes)::BIGINT, 60 FROM worker_samples "
                "WHERE bucket_s = 0 AND time < ? GROUP BY ALL", [cutoff])
            machine = _delete_count(cur, "worker_samples WHERE bucket_s = 0 AND time < ?", cutoff)
            cur.execute(
                f"INSERT INTO gpu_samples SELECT worker_id, gpu_index, {minute}, avg(utilization), "
                "avg(memory_used_bytes)::BIGINT, max(memory_total_bytes), max(temperature_c), avg(power_w), "
                "max(power_limit_w), avg(sm_clock_mhz)::INTEGER, avg(mem_clock_mhz)::INTEGER, "
                "string_agg(DISTINCT throttle_reasons, ','), avg(fan_percent), avg(pcie_tx_kbps), avg(pcie_rx_kbps), "
                "any_value(name), 60 FROM gpu_samples WHERE bucket_s = 0 AND time < ? GROUP BY ALL", [cutoff])
            gpu = _delete_count(cur, "gpu_samples WHERE bucket_s = 0 AND time < ?", cutoff)
            procs = _delete_count(cur, "gpu_processes WHERE time < ?", cutoff)
            # An agent resends at most its buffer (1,000 batches); keys older than the window are not needed.
            cur.execute("DELETE FROM write_batches WHERE kind = 'fleet' AND created_at < ?",
                        [min(cutoff, datetime.now(UTC) - timedelta(hours=2))])
        return {"machine_rows": machine, "gpu_rows": gpu, "process_rows": procs, "before": cutoff}

    def gpu_training_utilization(self, window_s: float = 120) -> pl.DataFrame:
        """Per GPU that a running run uses: its mean utilisation over the last ``window_s`` seconds."""
        return self.sql(
            "WITH used AS (SELECT DISTINCT p.worker_id, p.gpu_index, p.run_id FROM gpu_processes p "
            "  JOIN runs r ON r.id = p.run_id AND r.status = 'running' WHERE p.time > now() - to_microseconds(?)) "
            "SELECT u.worker_id, u.gpu_index, u.run_id, avg(g.utilization) AS utilization, count(*) AS samples "
            "FROM used u JOIN gpu_samples g USING (worker_id, gpu_index) "
            "WHERE g.time > now() - to_microseconds(?) GROUP BY ALL ORDER BY ALL",
            [round(window_s * 1e6), round(window_s * 1e6)])

    # -- alerts -------------------------------------------------------------------------------
    def list_alerts(self, *, status: str | None = None, worker_id: str | None = None, active: bool = False,
                    limit: int = 200) -> pl.DataFrame:
        """Alerts, newest first; ``active`` keeps the unresolved ones (open or acknowledged)."""
        _check_filter(status, ALERT_STATUSES, limit)
        return self.sql(
            "SELECT id, rule, severity, status, worker_id, message, value, dedup_key, opened_at, acknowledged_at, "
            "acknowledged_by, resolved_at, notified_at FROM alerts WHERE (? IS NULL OR status = ?) "
            "AND (? IS NULL OR worker_id = ?) AND (NOT ? OR status <> 'resolved') "
            "ORDER BY opened_at DESC, id LIMIT ?", [status, status, worker_id, worker_id, active, limit])

    def acknowledge_alert(self, alert_id: str, by: str | None = None) -> dict:
        """Mark an open alert as seen; it stays until its condition clears."""
        with self.transaction() as cur:
            found = cur.execute("SELECT status FROM alerts WHERE id = ?", [alert_id]).fetchall()
            if not found:
                raise NotFoundError(f"no alert with id {alert_id!r}; `bi-ide alerts list` shows them")
            if found[0][0] == "resolved":
                raise ConflictError(f"alert {alert_id} is already resolved; nothing to acknowledge")
            cur.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, now()), "
                        "acknowledged_by = coalesce(acknowledged_by, ?) WHERE id = ?", [by, alert_id])
        return self.list_alerts().filter(pl.col("id") == alert_id).row(0, named=True)

    def sync_alerts(self, rules: list[str], firing: list[dict]) -> dict:
        """Open an alert per firing condition not yet alerted (by dedup_key); resolve the unresolved
        alerts of ``rules`` whose condition no longer fires. Returns the alerts opened and resolved."""
        for f in firing:
            if f["severity"] not in SEVERITIES or f["rule"] not in rules:
                raise ValidationError(f"bad alert condition {f!r:.120}", field="firing")
        keys = [f["dedup_key"] for f in firing]
        with self.transaction() as cur:
            active = {k for (k,) in cur.execute(
                "SELECT dedup_key FROM alerts WHERE status <> 'resolved' AND list_contains(?, dedup_key)",
                [keys]).fetchall()}
            opened = []
            for f in firing:
                if f["dedup_key"] in active:
                    cur.execute("UPDATE alerts SET value = ? WHERE dedup_key = ? AND status <> 'resolved'",
                                [f.get("value"), f["dedup_key"]])
                    continue
                alert_id = new_id()
                cur.execute("INSERT INTO alerts (id, rule, severity, source, worker_id, message, dedup_key, value) "
                            "VALUES (?, ?, ?, 'fleet', ?, ?, ?, ?)",
                            [alert_id, f["rule"], f["severity"], f.get("worker_id"), f["message"], f["dedup_key"],
                             f.get("value")])
                active.add(f["dedup_key"])
                opened.append(alert_id)
            resolved = [r for (r,) in cur.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at = now() WHERE status <> 'resolved' "
                "AND list_contains(?, rule) AND NOT list_contains(?, dedup_key) RETURNING id", [rules, keys]).fetchall()]
        alerts = self.list_alerts(limit=10_000).filter(pl.col("id").is_in(opened + resolved))
        return {"opened": alerts.filter(pl.col("id").is_in(opened)).to_dicts(),
                "resolved": alerts.filter(pl.col("id").is_in(resolved)).to_dicts()}

    def mark_alerts_notified(self, alert_ids: list[str]) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE alerts SET notified_at = now() WHERE list_contains(?, id)", [alert_ids])

    # -- commands -----------------------------------------------------------------------------
    def queue_command(self, worker_id: str, kind: str, payload: dict | None = None, *,
                      created_by: str | None = None) -> dict:
        """Queue a command for a worker's agent: ping, pipeline, train or stop_run."""
        if kind not in COMMAND_KINDS:
            raise ValidationError(f"kind {kind!r} is not one of {list(COMMAND_KINDS)}", field="kind")
        text = to_json(payload or {})
        if len(text) > MAX_PAYLOAD_CHARS:
            raise ValidationError(f"the payload is {len(text)} characters; the limit is {MAX_PAYLOAD_CHARS}",
                                  field="payload")
        command_id = new_id()
        with self.transaction() as cur:
            if not cur.execute("SELECT 1 FROM workers WHERE id = ?", [worker_id]).fetchall():
                raise NotFoundError(f"no worker with id {worker_id!r}; `bi-ide workers list` shows them")
            cur.execute("INSERT INTO worker_commands (id, worker_id, kind, payload, created_by) VALUES (?, ?, ?, ?, ?)",
                        [command_id, worker_id, kind, text, created_by])
        return self.get_command(command_id)

    def get_command(self, command_id: str) -> dict:
        df = self.sql("SELECT * FROM worker_commands WHERE id = ?", [command_id])
        if df.is_empty():
            raise NotFoundError(f"no command with id {command_id!r}; `bi-ide commands list` shows them")
        return _decoded(df.row(0, named=True), "payload", "result")

    def list_commands(self, *, worker_id: str | None = None, status: str | None = None,
                      limit: int = 100) -> pl.DataFrame:
        """Commands, newest first."""
        _check_filter(status, COMMAND_STATUSES, limit)
        return self.sql(
            "SELECT id, worker_id, kind, status, payload, result, error, created_by, created_at, started_at, "
            "finished_at FROM worker_commands WHERE (? IS NULL OR worker_id = ?) AND (? IS NULL OR status = ?) "
            "ORDER BY created_at DESC, id LIMIT ?", [worker_id, worker_id, status, status, limit])

    def next_command(self, worker_id: str) -> dict | None:
        """The worker's oldest queued command, now marked running; None when there is none."""
        with self.transaction() as cur:
            hit = cur.execute(
                "UPDATE worker_commands SET status = 'running', started_at = now() WHERE id = ("
                "SELECT id FROM worker_commands WHERE worker_id = ? AND status = 'queued' "
                "ORDER BY created_at, id LIMIT 1) RETURNING id", [worker_id]).fetchall()
        return self.get_command(hit[0][0]) if hit else None

    def finish_command(self, command_id: str, status: str, *, result: dict | None = None,
                       error: str | None = None) -> dict:
        """Record how a running command ended (done or failed) and what it gave back."""
        if status not in ("done", "failed"):
            raise ValidationError(f"a command finishes as done or failed, not {status!r}", field="status")
        text = to_json(result)
        if text is not None and len(text) > MAX_PAYLOAD_CHARS:
            raise ValidationError(f"the result is {len(text)} characters; the limit is {MAX_PAYLOAD_CHARS}",
                                  field="result")
        if error is not None:
            check_text("error", error, MAX_PAYLOAD_CHARS)
        self._command_move(command_id, "running", status, "result = ?, error = ?, finished_at = now()", [text, error])
        return self.get_command(command_id)

    def cancel_command(self, command_id: str) -> dict:
        """Cancel a command that no agent has picked up yet."""
        self._command_move(command_id, "queued", "cancelled", "finished_at = now()", [])
        return self.get_command(command_id)

    def _command_move(self, command_id: str, source: str, target: str, sets: str, params: list) -> None:
        with self.transaction() as cur:
            found = cur.execute("SELECT status FROM worker_commands WHERE id = ?", [command_id]).fetchall()
            if not found:
                raise NotFoundError(f"no command with id {command_id!r}; `bi-ide commands list` shows them")
            if found[0][0] != source:
                raise ConflictError(f"command {command_id} is {found[0][0]}; only a {source} one can become {target}")
            cur.execute(f"UPDATE worker_commands SET status = ?, {sets} WHERE id = ?", [target, *params, command_id])

    # -- the thermal guard --------------------------------------------------------------------
    def record_run_process(self, run_id: str, *, host: str, pid: int) -> dict:
        """Say which host and process a run trains in, so its GPU processes map to it."""
        check_text("host", host, 255)
        if type(pid) is not int or pid <= 0:
            raise ValidationError(f"pid must be a positive integer, got {pid!r}", field="pid")
        with self.transaction() as cur:
            hit = cur.execute("UPDATE runs SET host = ?, pid = ? WHERE id = ? RETURNING id", [host, pid, run_id])
            if not hit.fetchall():
                raise NotFoundError(f"no run with id {run_id!r}; `bi-ide runs list` shows the runs")
        return self.get_run(run_id)

    def run_gpu_temperatures(self) -> pl.DataFrame:
        """Each running run with the hottest GPU it uses now (by its processes, else its worker and
        cuda:N device) and its current throttle factor."""
        return self.sql(
            "WITH latest AS (SELECT worker_id, gpu_index, temperature_c, time FROM gpu_samples "
            "  WHERE time > now() - INTERVAL 2 MINUTE "
            "  QUALIFY row_number() OVER (PARTITION BY worker_id, gpu_index ORDER BY time DESC) = 1), "
            "by_process AS (SELECT DISTINCT p.run_id, p.worker_id, p.gpu_index FROM gpu_processes p "
            "  JOIN latest l ON l.worker_id = p.worker_id AND l.gpu_index = p.gpu_index AND l.time = p.time "
            "  WHERE p.run_id IS NOT NULL), "
            "by_device AS (SELECT id AS run_id, worker_id, "
            "  coalesce(try_cast(regexp_extract(device, 'cuda:(\\d+)', 1) AS INTEGER), 0) AS gpu_index "
            "  FROM runs WHERE status = 'running' AND worker_id IS NOT NULL AND device LIKE 'cuda%' "
            "  AND id NOT IN (SELECT run_id FROM by_process)), "
            "used AS (SELECT * FROM by_process UNION ALL SELECT * FROM by_device) "
            "SELECT r.id AS run_id, coalesce(r.throttle_factor, 1.0) AS throttle_factor, u.worker_id, u.gpu_index, "
            "  l.temperature_c FROM runs r JOIN used u ON u.run_id = r.id "
            "JOIN latest l ON l.worker_id = u.worker_id AND l.gpu_index = u.gpu_index WHERE r.status = 'running' "
            "QUALIFY row_number() OVER (PARTITION BY r.id ORDER BY l.temperature_c DESC) = 1 ORDER BY r.id")

    def set_run_throttle(self, run_id: str, factor: float, reason: str, *, worker_id: str | None = None,
                         gpu_index: int | None = None, temperature_c: float | None = None) -> None:
        """Set a run's rate factor (1 = full speed) and record when and why."""
        if not 0 < factor <= 1:
            raise ValidationError(f"factor must be in (0, 1], got {factor}", field="factor")
        check_text("reason", reason, 500)
        with self.transaction() as cur:
            cur.execute("UPDATE runs SET throttle_factor = ?, throttle_reason = ?, updated_at = now() WHERE id = ?",
                        [factor, reason, run_id])
            cur.execute("INSERT INTO run_throttles (run_id, factor, worker_id, gpu_index, temperature_c, reason) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [run_id, factor, worker_id, gpu_index, temperature_c, reason])

    def run_throttles(self, run_id: str) -> pl.DataFrame:
        """The thermal guard's throttles and releases of a run, oldest first."""
        return self.sql("SELECT * FROM run_throttles WHERE run_id = ? ORDER BY time", [run_id])

    # -- SLOs (seed §X) ---------------------------------------------------------------------
    def slos(self, window_s: float | None = None) -> list[dict]:
        """Each objective's current value and error budget (bi_ide.fleet.slo)."""
        return slo.report(self, window_s or slo.WINDOW_S)

    def slo_counts(self, window_s: float) -> dict:
        """Good and total events of each objective over the last ``window_s`` seconds."""
        since = datetime.now(UTC) - timedelta(seconds=window_s)
        (runs_done, runs_ended), = self._rows(
            "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FROM runs WHERE kind = 'train' "
            "AND status IN ('done', 'failed') AND finished_at >= ?", [since])
        (fast, reconnects, failed), = self._rows(
            "SELECT count(*) FILTER (WHERE reconnect_s <= 30), count(*), coalesce(sum(failed_attempts), 0) "
            "FROM worker_reconnects WHERE time >= ?", [since])
        (sent,), = self._rows("SELECT count(*) FROM write_batches WHERE kind = 'fleet' AND created_at >= ?", [since])
        (busy, training), = self._rows(
            "WITH used AS (SELECT DISTINCT worker_id, gpu_index, time FROM gpu_processes "
            "  WHERE run_id IS NOT NULL AND time >= ?) "
            "SELECT count(*) FILTER (WHERE g.utilization >= 70), count(*) FROM gpu_samples g "
            "JOIN used u USING (worker_id, gpu_index, time)", [since])
        return {"training_completion": (runs_done, runs_ended), "worker_reconnect": (fast, reconnects),
                "api_availability": (sent, sent + failed), "gpu_utilization": (busy, training)}


def _reconnect(r) -> list:
    fields = ("outage_s", "reconnect_s", "failed_attempts", "dropped_batches")
    if not isinstance(r, dict) or set(r) - set(fields) or any(type(r.get(f, 0)) not in (int, float) for f in fields):
        raise ValidationError(f"reconnect must be {{{', '.join(fields)}}} with numbers", field="reconnect")
    return [float(r.get("outage_s", 0)), float(r.get("reconnect_s", 0)), int(r.get("failed_attempts", 0)),
            int(r.get("dropped_batches", 0))]


def _check_filter(status: str | None, statuses: tuple[str, ...], limit: int) -> None:
    if status is not None and status not in statuses:
        raise ValidationError(f"status {status!r} is not one of {list(statuses)}", field="status")
    if not 1 <= limit <= 10_000:
        raise ValidationError(f"limit must be 1..10000, got {limit}", field="limit")


def _decoded(row: dict, *keys: str) -> dict:
    for key in keys:
        row[key] = json.loads(row[key]) if row[key] else None
    return row


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _delete_count(cur, where: str, cutoff: datetime) -> int:
    (n,), = cur.execute(f"SELECT count(*) FROM {where}", [cutoff]).fetchall()
    cur.execute(f"DELETE FROM {where}", [cutoff])
    return n
