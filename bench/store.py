"""How fast the store takes and gives metric points.

Prints, in one run:
  1. points/s written embedded (Store.write_metrics on a file), against raw DuckDB
     `INSERT ... SELECT` from the same Arrow table into a plain long table (the floor);
  2. points/s written through a real hub over loopback (HubClient, batched), against the
     embedded figure of this same run;
  3. the time of a downsampled read (1,000 buckets, min/max/last) of one series from a
     10M-point table, against DuckDB's own bucketing query on a plain 10M-row table.

Also the p50/p95 latency of small API calls (seed KPI: p95 <= 300 ms).
Goals (issue): >= 5,000,000 points/s embedded, >= 200,000 points/s through the hub, <= 50 ms read.
Ends with one JSON line of the figures.

    python bench/store.py            # full size
    python bench/store.py --quick    # a smaller smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from bi_ide.hub.client import HubClient
from bi_ide.hub.process import HubProcess
from bi_ide.store import Store

NAMES = ["loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_bpb", "mfu", "gpu_util", "gpu_mem", "gpu_temp"]


def series_table(run_ids: list[str], steps: int) -> pa.Table:
    """Points for every (run, name) in NAMES, steps 0..steps-1, ordered by run then step."""
    rows_per_run = steps * len(NAMES)
    step = np.repeat(np.arange(steps, dtype=np.int64), len(NAMES))
    name = pa.array(NAMES * steps)
    parts = []
    rng = np.random.default_rng(0)
    for run_id in run_ids:
        parts.append(pa.table({
            "run_id": pa.array([run_id] * rows_per_run),
            "step": step,
            "name": name,
            "value": rng.random(rows_per_run),
            "time": pa.array(np.full(rows_per_run, 1_780_000_000_000_000, dtype=np.int64)).cast(
                pa.timestamp("us", tz="UTC")),
        }))
    return pa.concat_tables(parts)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def embedded_write(folder: Path, batch: pa.Table, batches: int) -> tuple[float, float]:
    with Store(folder / "embedded.duckdb") as store:
        run_ids = [store.create_run(f"w{i}")["id"] for i in range(batches)]
        tables = [batch.set_column(0, "run_id", pa.array([r] * batch.num_rows)) for r in run_ids]
        t = time.perf_counter()
        for table in tables:
            store.write_metrics(table)
        ours = batches * batch.num_rows / (time.perf_counter() - t)
    con = duckdb.connect(str(folder / "raw.duckdb"))
    con.execute("CREATE TABLE metrics (run_id VARCHAR, step BIGINT, name VARCHAR, value DOUBLE, time TIMESTAMPTZ)")
    t = time.perf_counter()
    for table in tables:
        con.register("b", table)
        con.execute("INSERT INTO metrics SELECT * FROM b")
        con.unregister("b")
    raw = batches * batch.num_rows / (time.perf_counter() - t)
    con.close()
    return ours, raw


def hub_write(folder: Path, points: int, requests_n: int) -> tuple[float, list[float]]:
    """Bulk points/s through the hub, and the latencies of small requests (a trainer's usual call)."""
    db = folder / "hub.duckdb"
    with Store(db) as store:
        _, secret = store.create_token("bench", "developer")
    with HubProcess(db, args=("--rate-limit", "1000", "--burst", "1000")) as hub:
        client = HubClient(hub.url, secret)
        run_id = client.create_run("hub-bench")["id"]
        table = series_table([run_id], points // len(NAMES))
        client.write_metrics(table.slice(0, 10_000))  # warm the connection and the hub's code paths
        t = time.perf_counter()
        client.write_metrics(table)
        rate = table.num_rows / (time.perf_counter() - t)
        latencies = []
        small = {"step": list(range(10)), "name": ["loss"] * 10, "value": [1.0] * 10}
        for i in range(requests_n):
            t = time.perf_counter()
            if i % 2:
                client.session.post(f"{hub.url}/api/v1/runs/{run_id}/metrics", json=small, timeout=30).raise_for_status()
            else:
                client.get_run(run_id)
            latencies.append(time.perf_counter() - t)
        return rate, latencies


def downsampled_read(folder: Path, runs: int, steps: int) -> tuple[float, float, int]:
    with Store(folder / "read.duckdb") as store:
        run_ids = [store.create_run(f"r{i}")["id"] for i in range(runs)]
        table = series_table(run_ids, steps)
        for start in range(0, table.num_rows, 2_000_000):
            store.write_metrics(table.slice(start, 2_000_000))
        target = run_ids[runs // 2]
        store.read_metrics(target, ["loss"], points=1000)
        samples = []
        for _ in range(15):
            t = time.perf_counter()
            df = store.read_metrics(target, ["loss"], points=1000)
            samples.append(time.perf_counter() - t)
        ours = statistics.median(samples)
        rows = len(df)
    con = duckdb.connect(str(folder / "read-raw.duckdb"))
    con.register("points", table)
    con.execute("CREATE TABLE metrics AS SELECT * FROM points")
    query = ("SELECT name, max(step), arg_max(value, step), min(value), max(value) FROM metrics "
             "WHERE run_id = ? AND name = 'loss' GROUP BY name, step * 1000 // ?")
    con.execute(query, [target, steps]).fetchall()
    raw = statistics.median(timed(lambda: con.execute(query, [target, steps]).fetchall()) for _ in range(15))
    con.close()
    return ours, raw, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    batch_points, batches = (200_000, 3) if args.quick else (1_000_000, 8)
    hub_points = 200_000 if args.quick else 2_000_000
    runs, steps = (10, 10_000) if args.quick else (10, 100_000)  # 10 runs x 10 series x steps

    with tempfile.TemporaryDirectory(prefix="bi-ide-bench-") as tmp:
        folder = Path(tmp)
        batch = series_table(["placeholder"], batch_points // len(NAMES))
        ours, raw = embedded_write(folder, batch, batches)
        print(f"embedded write   {ours:>13,.0f} points/s   raw DuckDB insert {raw:>13,.0f} points/s   "
              f"ratio {ours / raw:.2f}   (goal >= 5,000,000)")
        hub, latencies = hub_write(folder, hub_points, 200 if args.quick else 1000)
        print(f"hub write        {hub:>13,.0f} points/s   embedded {ours:>13,.0f}   ratio {hub / ours:.3f}   "
              "(goal >= 200,000)")
        p50, p95 = (np.percentile(latencies, q) * 1e3 for q in (50, 95))
        print(f"API latency      p50 {p50:.1f} ms   p95 {p95:.1f} ms over {len(latencies)} small requests "
              "(run read / 10-point JSON write; seed KPI p95 <= 300 ms)")
        read_s, raw_read_s, rows = downsampled_read(folder, runs, steps)
        table_points = runs * len(NAMES) * steps
        print(f"downsampled read {read_s * 1e3:>10.1f} ms ({rows} buckets of one {steps:,}-point series in a "
              f"{table_points:,}-point table)   raw DuckDB {raw_read_s * 1e3:.1f} ms   ratio {read_s / raw_read_s:.2f}"
              "   (goal <= 50 ms)")

    print(json.dumps({
        "embedded_write_points_per_s": round(ours),
        "raw_duckdb_insert_points_per_s": round(raw),
        "embedded_vs_raw_ratio": round(ours / raw, 3),
        "hub_write_points_per_s": round(hub),
        "hub_vs_embedded_ratio": round(hub / ours, 4),
        "api_p50_ms": round(p50, 2),
        "api_p95_ms": round(p95, 2),
        "downsampled_read_ms": round(read_s * 1e3, 2),
        "raw_duckdb_read_ms": round(raw_read_s * 1e3, 2),
        "read_vs_raw_ratio": round(read_s / raw_read_s, 3),
        "table_points": table_points,
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
