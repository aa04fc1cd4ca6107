"""What a machine is and how busy it is: psutil for CPU, RAM, disk, network and load, NVML for
NVIDIA GPUs, and on Apple Silicon what macOS shows without root.

No OS-specific paths: the disk is the one holding the agent's working folder, wherever that is.
"""

from __future__ import annotations

import os
import platform
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


def apple_gpu() -> dict:
    """Apple Silicon's GPU as far as it can be read without sudo: its name and whether MPS works."""
    name = "Apple GPU"
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        name = f"{out} GPU" if out else name
    except (OSError, subprocess.SubprocessError):
        pass
    return {"index": 0, "name": name, "mps": mps_available()}


def mps_available() -> bool:
    try:
        import torch

        return bool(torch.backends.mps.is_available())
    except ImportError:
        return False
