"""NVML parsing with ``FakeNvml``, a stand-in for pynvml (no GPU on this machine), and the real path
where a GPU exists.

Run as a script, this module is an agent process whose GPUs come from FakeNvml, with the
temperature read from a file, so tests can heat and cool a GPU under a real agent and a real hub:
``python tests/test_fleet_nvml.py --hub URL --token-file F --worker-id W --temp-file T``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from bi_ide.fleet.nvml import NvmlReader, throttle_names


class FakeNvml:
    """Stand-in for pynvml: no GPU here. Answers NVML's calls from ``gpus`` (one dict per GPU)."""

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's name
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
        pass

    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES = 0, 1
    nvmlClocksEventReasonGpuIdle = 1
    nvmlClocksEventReasonSwPowerCap = 4
    nvmlClocksEventReasonSwThermalSlowdown = 32
    nvmlClocksThrottleReasonHwThermalSlowdown = 64

    def __init__(self, gpus: list[dict] | None = None, *, library: bool = True, temp_file: str | None = None):
        self.gpus = gpus if gpus is not None else []
        self.library = library
        self.temp_file = temp_file
        self.shutdown = False

    def _gpu(self, h) -> dict:
        return self.gpus[h]

    def _get(self, h, key):
        value = self._gpu(h).get(key)
        if value is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return value

    def nvmlInit(self):
        if not self.library:
            raise self.NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self._get(h, "name")

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self._get(h, "util"), memory=0)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=self._get(h, "mem_used"), total=self._get(h, "mem_total"))

    def nvmlDeviceGetTemperature(self, h, sensor):
        if self.temp_file and Path(self.temp_file).is_file():
            return int(Path(self.temp_file).read_text().strip() or 0)
        return self._get(h, "temp")

    def nvmlDeviceGetPowerUsage(self, h):
        return self._get(h, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._get(h, "limit_mw")

    def nvmlDeviceGetClockInfo(self, h, clock):
        return self._get(h, {self.NVML_CLOCK_SM: "sm", self.NVML_CLOCK_MEM: "memclk"}[clock])

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._get(h, "reasons")

    def nvmlDeviceGetFanSpeed(self, h):
        return self._get(h, "fan")

    def nvmlDeviceGetPcieThroughput(self, h, counter):
        return self._get(h, "pcie")[counter]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=p["pid"], usedGpuMemory=p.get("mem")) for p in self._gpu(h).get("procs", [])]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return []


RTX_5090 = {"name": "NVIDIA GeForce RTX 5090", "util": 93, "mem_used": 20 << 30, "mem_total": 32 << 30, "temp": 71,
            "power_mw": 512_000, "limit_mw": 575_000, "sm": 2610, "memclk": 14001, "reasons": 4 | 32, "fan": 55,
            "pcie": (1200, 3400), "procs": [{"pid": os.getpid(), "mem": 19 << 30}]}
# A laptop card that hides fan, PCIe counters and per-process memory.
RTX_4050 = {"name": b"NVIDIA GeForce RTX 4050 Laptop GPU", "util": 0, "mem_used": 300 << 20, "mem_total": 6 << 30,
            "temp": 45, "power_mw": 9_000, "limit_mw": 80_000, "sm": 210, "memclk": 405, "reasons": 1,
            "procs": [{"pid": 999_999, "mem": None}]}


def test_reads_every_field_of_a_full_card():
    reader = NvmlReader(FakeNvml([RTX_5090]))
    (gpu,), (proc,) = reader.read()
    assert gpu == {"index": 0, "name": "NVIDIA GeForce RTX 5090", "utilization": 93.0, "memory_used_bytes": 20 << 30,
                   "memory_total_bytes": 32 << 30, "temperature_c": 71.0, "power_w": 512.0, "power_limit_w": 575.0,
                   "sm_clock_mhz": 2610, "mem_clock_mhz": 14001, "throttle_reasons": "sw_power_cap,sw_thermal",
                   "fan_percent": 55.0, "pcie_tx_kbps": 1200.0, "pcie_rx_kbps": 3400.0}
    assert proc["gpu_index"] == 0 and proc["pid"] == os.getpid() and proc["memory_used_bytes"] == 19 << 30
    assert proc["process_name"]  # this very process, named by psutil


def test_unsupported_readings_are_left_out():
    reader = NvmlReader(FakeNvml([RTX_5090, RTX_4050]))
    gpus, procs = reader.read()
    laptop = gpus[1]
    assert laptop["index"] == 1 and laptop["name"] == "NVIDIA GeForce RTX 4050 Laptop GPU"  # bytes decoded
    assert "fan_percent" not in laptop and "pcie_tx_kbps" not in laptop and laptop["throttle_reasons"] == "idle"
    hidden = [p for p in procs if p["gpu_index"] == 1][0]
    assert "memory_used_bytes" not in hidden and hidden["process_name"] is None  # no such process here
    # why each reading is missing, in NVML's words, for the laptop only
    assert set(reader.unsupported) >= {(1, "fan_percent"), (1, "pcie_tx_kbps"), (1, "pcie_rx_kbps")}
    assert not any(index == 0 for index, _ in reader.unsupported)
    assert all(reason for reason in reader.unsupported.values())


def test_static_description_for_registration():
    assert NvmlReader(FakeNvml([RTX_4050])).static() == [
        {"index": 0, "name": "NVIDIA GeForce RTX 4050 Laptop GPU", "memory_total_bytes": 6 << 30, "power_limit_w": 80.0}]


def test_no_library_means_no_gpus_and_no_error():
    reader = NvmlReader(FakeNvml([RTX_5090], library=False))
    assert reader.read() == ([], []) and reader.static() == []
    reader.close()


def test_the_real_pynvml_without_a_gpu_reports_none():
    pytest.importorskip("pynvml")
    reader = NvmlReader()
    gpus, _ = reader.read()
    if not reader.handles:  # this machine: NVMLError_LibraryNotFound, swallowed
        assert gpus == []
    reader.close()


def test_close_shuts_nvml_down():
    fake = FakeNvml([RTX_5090])
    NvmlReader(fake).close()
    assert fake.shutdown


def test_throttle_names():
    assert throttle_names(FakeNvml, 0) == ""
    assert throttle_names(FakeNvml, 64 | 1) == "idle,hw_thermal"


@pytest.mark.gpu
def test_real_nvml_reads_the_gpu():
    reader = NvmlReader()
    gpus, _ = reader.read()
    assert gpus, "a GPU machine must report its GPUs"
    g = gpus[0]
    assert g["memory_total_bytes"] > 0 and 0 <= g["utilization"] <= 100 and 0 < g["temperature_c"] < 130
    assert isinstance(g["name"], str) and g["name"]
    reader.close()


# -- an agent process with stand-in GPUs ----------------------------------------------------------
def main(argv: list[str]) -> None:
    """Run a real agent against a real hub; its one GPU is FakeNvml with the temperature in a file."""
    import logging
    import signal

    from bi_ide.fleet.agent import Agent
    from bi_ide.fleet.system import Machine
    from bi_ide.hub.client import HubClient

    p = argparse.ArgumentParser()
    p.add_argument("--hub", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--temp-file", required=True)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--max-backoff", type=float, default=2.0)
    p.add_argument("--counters", help="Write the agent's counters here (JSON) when it stops.")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    gpu = dict(RTX_5090, procs=[])
    token = Path(args.token_file).read_text().strip()
    with HubClient(args.hub, token, timeout_s=5, retries=0) as client:
        agent = Agent(client, Machine(NvmlReader(FakeNvml([gpu], temp_file=args.temp_file))),
                      worker_id=args.worker_id, interval_s=args.interval, max_backoff_s=args.max_backoff,
                      command_poll_s=1.0)
        counters = agent.run(stop)
    if args.counters:
        Path(args.counters).write_text(json.dumps({**counters.__dict__, "unsent": len(agent.buffer)}))


if __name__ == "__main__":
    main(sys.argv[1:])
