"""The fleet in Prometheus' text exposition format (version 0.0.4), for users who run Grafana."""

from __future__ import annotations

from bi_ide.store.fleet import SEVERITIES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

WORKER_GAUGES = (
    ("bi_ide_worker_heartbeat_age_seconds", "age_s", "Seconds since the worker was last heard from."),
    ("bi_ide_worker_cpu_percent", "cpu_percent", "CPU utilisation of the worker."),
    ("bi_ide_worker_ram_percent", "ram_percent", "RAM in use on the worker."),
    ("bi_ide_worker_disk_percent", "disk_percent", "Disk in use on the worker."),
    ("bi_ide_worker_load1", "load_1m", "One-minute load average of the worker."),
)
GPU_GAUGES = (
    ("bi_ide_gpu_utilization_percent", "utilization", "GPU utilisation."),
    ("bi_ide_gpu_memory_used_bytes", "memory_used_bytes", "GPU memory in use."),
    ("bi_ide_gpu_memory_total_bytes", "memory_total_bytes", "GPU memory in all."),
    ("bi_ide_gpu_temperature_celsius", "temperature_c", "GPU temperature."),
    ("bi_ide_gpu_power_watts", "power_w", "GPU power draw."),
    ("bi_ide_gpu_sm_clock_mhz", "sm_clock_mhz", "GPU SM clock."),
)


def exposition(store, writer=None) -> str:
    """Workers, GPUs and open alerts as Prometheus gauges; with the hub's SampleWriter, its counters."""
    workers = store.list_workers().to_dicts()
    gpus = store.gpu_latest().to_dicts()
    alerts = store.list_alerts(active=True, limit=10_000)
    lines: list[str] = []
    _gauge(lines, "bi_ide_worker_up", "1 when the worker's status is green or yellow, 0 when red.",
           [({"worker": w["id"], "hostname": w["hostname"]}, int(w["status"] != "red")) for w in workers])
    for metric, key, about in WORKER_GAUGES:
        _gauge(lines, metric, about, [({"worker": w["id"]}, w[key]) for w in workers])
    for metric, key, about in GPU_GAUGES:
        _gauge(lines, metric, about, [({"worker": g["worker_id"], "gpu": str(g["gpu_index"]), "name": g["name"] or ""},
                                       g[key]) for g in gpus])
    by_severity = {s: int((alerts["severity"] == s).sum()) for s in SEVERITIES}
    _gauge(lines, "bi_ide_alerts_active", "Alerts not resolved yet, by severity.",
           [({"severity": s}, n) for s, n in by_severity.items()])
    if writer is not None:
        for name, value, about in (
            ("bi_ide_sample_write_rounds_total", writer.rounds, "Transactions that stored agents' samples."),
            ("bi_ide_sample_write_requests_total", writer.requests, "Agent sample requests stored."),
            ("bi_ide_sample_write_seconds_total", writer.seconds, "Time spent in those transactions."),
        ):
            _gauge(lines, name, about, [({}, value)], kind="counter")
    return "\n".join(lines) + "\n"


def _gauge(lines: list[str], name: str, about: str, samples: list[tuple[dict, object]], kind: str = "gauge") -> None:
    lines += [f"# HELP {name} {about}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if value is None:
            continue
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {float(value):g}" if text else f"{name} {float(value):g}")


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
