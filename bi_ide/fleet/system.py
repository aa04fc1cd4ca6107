"""What a machine is and how busy it is: psutil for CPU, RAM, disk, network and load, NVML for
NVIDIA GPUs, and on Apple Silicon what macOS shows without root (IOKit's accelerator statistics:
utilisation and the unified memory the GPU holds).

No OS-specific paths: the disk is the one holding the agent's working folder, wherever that is.
"""

from __future__ import annotations

import os
import platform
import plistlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

import bi_ide
from bi_ide.fleet.nvml import NvmlReader


class Machine:
    """Takes samples of this machine; ``gpu_reader`` reads NVIDIA GPUs (an NvmlReader)."""

    def __init__(self, gpu_reader: NvmlReader | None = None, disk_path: str | os.PathLike | None = None):
        self.gpus = gpu_reader if gpu_reader is not None else NvmlReader()
        self.disk_path = str(Path(disk_path or Path.cwd()).anchor or "/")
        self.apple = sys.platform == "darwin" and platform.machine() == "arm64"
        psutil.cpu_percent(None)  # the first call starts the measuring interval; it returns 0.0

    def describe(self, labels: dict | None = None) -> dict:
        """The registration: hostname, OS, cores, RAM, GPUs and labels."""
        gpus = self.gpus.static()
        if self.apple:
            gpus.append(apple_gpu())
        return {
            "hostname": socket.gethostname(),
            "os": platform.system(),
            "platform": platform.platform(terse=True),
            "cpu_count": psutil.cpu_count(logical=True) or 1,
            "ram_bytes": psutil.virtual_memory().total,
            "gpus": gpus,
            "labels": labels or {},
            "agent_version": bi_ide.__version__,
        }

    def sample(self) -> dict:
        """One reading of the machine, ready to send."""
        ram = psutil.virtual_memory()
        disk = psutil.disk_usage(self.disk_path)
        net = psutil.net_io_counters()
        gpus, processes = self.gpus.read()
        if self.apple and (reading := apple_gpu_reading()) is not None:
            gpus = [*gpus, reading]
        s = {
            "time": time.time(),
            "cpu_percent": psutil.cpu_percent(None),
            "ram_percent": ram.percent,
            "ram_used_bytes": ram.total - ram.available,
            "disk_percent": disk.percent,
            "disk_used_bytes": disk.used,
            "net_sent_bytes": net.bytes_sent if net else None,
            "net_recv_bytes": net.bytes_recv if net else None,
            "load_1m": psutil.getloadavg()[0],
            "gpus": gpus,
            "processes": processes,
        }
        return {k: v for k, v in s.items() if v is not None}

    def close(self) -> None:
        self.gpus.close()


# IOKit's registry, as a plist: the GPU (an IOAccelerator) with its PerformanceStatistics, which any
# user may read (powermetrics, the other source, needs sudo).
IOREG = ("ioreg", "-r", "-d", "1", "-w", "0", "-c", "IOAccelerator", "-a")


def apple_gpu(run=None) -> dict:
    """Apple Silicon's GPU as far as it can be read without sudo: its name, cores and whether MPS works."""
    run = run or subprocess.run
    entry = _accelerator(run) or {}
    name = entry.get("model") if isinstance(entry.get("model"), str) else None
    if name is None:
        try:
            out = run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                      timeout=5).stdout.strip()
            name = out or None
        except (OSError, subprocess.SubprocessError):
            pass
    cores = entry.get("gpu-core-count")
    described = f"{name or 'Apple'} GPU" + (f" ({cores} cores)" if isinstance(cores, int) else "")
    return {"index": 0, "name": described, "mps": mps_available()}


def apple_gpu_reading(run=None) -> dict | None:
    """The Apple GPU's utilisation (%) and the unified memory it uses now, from IOKit; None if unreadable.

    ``Device Utilization %`` is the share of time the GPU was busy; ``In use system memory`` the bytes
    of unified memory the GPU driver holds.
    """
    stats = (_accelerator(run or subprocess.run) or {}).get("PerformanceStatistics")
    if not isinstance(stats, dict) or not isinstance(stats.get("Device Utilization %"), int | float):
        return None
    reading = {"index": 0, "utilization": float(stats["Device Utilization %"])}
    if isinstance(stats.get("In use system memory"), int):
        reading["memory_used_bytes"] = stats["In use system memory"]
    return reading


def _accelerator(run) -> dict | None:
    """The first IOAccelerator in the IOKit registry that has performance statistics."""
    try:
        entries = plistlib.loads(run(list(IOREG), capture_output=True, timeout=5).stdout)
    except (OSError, subprocess.SubprocessError, plistlib.InvalidFileException, ValueError):
        return None
    entries = entries if isinstance(entries, list) else [entries]
    found = [e for e in entries if isinstance(e, dict) and "PerformanceStatistics" in e]
    return found[0] if found else None


def mps_available() -> bool:
    try:
        import torch

        return bool(torch.backends.mps.is_available())
    except ImportError:
        return False


def record(seconds: float, out: str | os.PathLike, interval: float = 1.0) -> dict:
    """Sample this machine every ``interval`` s for ``seconds``, as the agent would, into a JSON file.

    The file holds the samples (what the agent would send), the registration and, per GPU field
    left out, NVML's reason. ``python -m bi_ide.fleet.system --seconds 10 --out samples.json``
    runs it beside a job, e.g. to check a new GPU machine without a hub (bench/gpu.py does).
    """
    import json

    m = Machine()
    samples, start = [], time.monotonic()
    try:
        for i in range(max(1, round(seconds / interval))):
            samples.append(m.sample())
            time.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
        data = {"hostname": socket.gethostname(), "describe": m.describe(), "samples": samples,
                "gpus_seen": len(m.gpus.handles),
                "unsupported": {f"{index}:{name}": why for (index, name), why in m.gpus.unsupported.items()}}
    finally:
        m.close()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, out)  # whole or not at all: a reader waits for the file
    return data


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bi_ide.fleet.system", description=record.__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to sample (default 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    a = parser.parse_args()
    if not 0 < a.interval <= a.seconds <= 86_400:
        parser.error("want 0 < --interval <= --seconds <= 86400")
    record(a.seconds, a.out, a.interval)
