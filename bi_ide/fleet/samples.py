"""The shape of what an agent sends: batches of samples, checked value by value, then Arrow tables.

A request carries up to ``MAX_BATCHES`` batches, each ``{"key": ..., "samples": [...]}``. The key
makes a resent batch harmless (the store keeps the keys it applied). A sample is one reading of a
machine: ``time`` (seconds since 1970 UTC), the machine's numbers, its ``gpus`` and the GPU
``processes``. One bad value rejects the whole request, with the place of the value in the message.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pyarrow as pa

from bi_ide.errors import ValidationError

MAX_BATCHES = 200  # per request; an agent sends its backlog in chunks of this many
MAX_SAMPLES = 600  # per batch: ten minutes at 1 s
MAX_GPUS = 64
MAX_PROCESSES = 256
MAX_KEY_CHARS = 200
FUTURE_S = 300  # a sample time more than this ahead of the hub's clock is refused

NUMBER = ((int, float), pa.float64(), "a number")
INTEGER = ((int,), pa.int64(), "an integer")
TEXT = ((str,), pa.string(), "a string")

# Column -> what it accepts; every column but time and the index may be missing or null.
MACHINE = {
    "cpu_percent": NUMBER, "ram_percent": NUMBER, "ram_used_bytes": INTEGER, "disk_percent": NUMBER,
    "disk_used_bytes": INTEGER, "net_sent_bytes": INTEGER, "net_recv_bytes": INTEGER, "load_1m": NUMBER,
}
GPU = {
    "index": INTEGER, "name": TEXT, "utilization": NUMBER, "memory_used_bytes": INTEGER,
    "memory_total_bytes": INTEGER, "temperature_c": NUMBER, "power_w": NUMBER, "power_limit_w": NUMBER,
    "sm_clock_mhz": INTEGER, "mem_clock_mhz": INTEGER, "throttle_reasons": TEXT, "fan_percent": NUMBER,
    "pcie_tx_kbps": NUMBER, "pcie_rx_kbps": NUMBER,
}
PROCESS = {"gpu_index": INTEGER, "pid": INTEGER, "process_name": TEXT, "memory_used_bytes": INTEGER}
ORIGIN = {"worker_id": TEXT, "hostname": TEXT}  # added by the store to every row it inserts
REQUIRED = {"gpu": ("index",), "process": ("gpu_index", "pid")}
TIME = pa.timestamp("us", tz="UTC")


@dataclass
class Batch:
    """One checked batch: its key and its rows, each row a dict with ``time`` in microseconds."""

    key: str
    machine: list[dict] = field(default_factory=list)
    gpus: list[dict] = field(default_factory=list)
    processes: list[dict] = field(default_factory=list)


def parse_batches(batches) -> list[Batch]:
    """Check a request's ``batches``; a key sent twice in one request counts once."""
    if not isinstance(batches, list) or not 1 <= len(batches) <= MAX_BATCHES:
        raise ValidationError(f"batches must be a list of 1 to {MAX_BATCHES} batches", field="batches")
    now = time.time()
    parsed: dict[str, Batch] = {}
    for b, batch in enumerate(batches):
        where = f"batches[{b}]"
        if not isinstance(batch, dict) or set(batch) != {"key", "samples"}:
            raise ValidationError(f"{where} must be {{\"key\": ..., \"samples\": [...]}}", field="batches")
        key, samples = batch["key"], batch["samples"]
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise ValidationError(f"{where}.key must be a string of 1 to {MAX_KEY_CHARS} characters", field="key")
        if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
            raise ValidationError(f"{where}.samples must be a list of at most {MAX_SAMPLES}", field="samples")
        out = Batch(key)
        for s, sample in enumerate(samples):
            _sample(out, sample, f"{where}.samples[{s}]", now)
        parsed.setdefault(key, out)
    return list(parsed.values())


def _sample(out: Batch, sample, where: str, now: float) -> None:
    if not isinstance(sample, dict):
        raise ValidationError(f"{where} must be an object", field="samples")
    t = sample.get("time")
    if type(t) not in (int, float) or not math.isfinite(t) or not 0 < t <= now + FUTURE_S:
        raise ValidationError(f"{where}.time must be seconds since 1970 UTC, not in the future; got {t!r:.40}",
                              field="time")
    micros = round(t * 1e6)
    gpus, processes = sample.get("gpus", []), sample.get("processes", [])
    machine = {k: v for k, v in sample.items() if k not in ("time", "gpus", "processes")}
    out.machine.append({"time": micros, **_row(machine, MACHINE, where, ())})
    for kind, items, spec, limit in (("gpu", gpus, GPU, MAX_GPUS), ("process", processes, PROCESS, MAX_PROCESSES)):
        if not isinstance(items, list) or len(items) > limit:
            raise ValidationError(f"{where}.{kind}s must be a list of at most {limit}", field=f"{kind}s")
        rows = out.gpus if kind == "gpu" else out.processes
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValidationError(f"{where}.{kind}s[{i}] must be an object", field=f"{kind}s")
            rows.append({"time": micros, **_row(item, spec, f"{where}.{kind}s[{i}]", REQUIRED[kind])})


def _row(values: dict, spec: dict, where: str, required: tuple[str, ...]) -> dict:
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ValidationError(f"{where} has unknown field(s) {unknown}; allowed: {sorted(spec)}", field=unknown[0])
    for name, value in values.items():
        types, _, what = spec[name]
        ok = value is None or (type(value) in types and (not isinstance(value, float) or math.isfinite(value)))
        if not ok or (isinstance(value, str) and len(value) > 200):
            raise ValidationError(f"{where}.{name} must be {what}, got {value!r:.40}", field=name)
    for name in required:
        if values.get(name) is None:
            raise ValidationError(f"{where}.{name} is required", field=name)
    return values


def table(rows: list[dict], spec: dict) -> pa.Table:
    """Rows (with ``time`` in microseconds) as an Arrow table: time first, then every column of ``spec``."""
    columns = {"time": pa.array([r["time"] for r in rows], pa.int64()).cast(TIME)}
    for name, (_, kind, _) in spec.items():
        columns[name] = pa.array([r.get(name) for r in rows], kind)
    return pa.table(columns)
