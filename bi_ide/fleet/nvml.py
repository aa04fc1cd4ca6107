"""NVIDIA GPUs through NVML (``pynvml`` from nvidia-ml-py): the one place that calls it.

``NvmlReader(pynvml)`` reads every GPU and the processes on them. Without a GPU or driver,
``nvmlInit()`` fails (NVMLError_LibraryNotFound and friends) and the reader reports no GPUs, no
error. A reading the card does not support (fan on a laptop, PCIe counters) is left out, and
``unsupported`` says why, in NVML's words, per GPU and field.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MIB = 1 << 20


class NvmlReader:
    """Reads GPUs and their processes through an NVML module (``pynvml``, or a stand-in in tests)."""

    def __init__(self, nvml=None):
        self.nv = None
        self.handles: list = []
        self.unsupported: dict[tuple[int, str], str] = {}  # (gpu index, field) -> NVML's error, last read
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:  # nvidia-ml-py not installed: no NVIDIA GPUs to read
                return
        try:
            nvml.nvmlInit()
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except nvml.NVMLError as e:  # no driver or library: a machine without an NVIDIA GPU
            log.info("no NVIDIA GPU readings: %s", e)
            self.handles = []
            return
        self.nv = nvml

    def close(self) -> None:
        if self.nv is not None:
            self._try((-1, "shutdown"), self.nv.nvmlShutdown)
            self.nv = None

    def static(self) -> list[dict]:
        """What registration says about each GPU: index, name, memory and power limit."""
        return [{k: g[k] for k in ("index", "name", "memory_total_bytes", "power_limit_w") if k in g}
                for g in self.read()[0]]

    def read(self) -> tuple[list[dict], list[dict]]:
        """(gpus, processes): one dict per GPU and one per process using a GPU."""
        if self.nv is None:
            return [], []
        gpus, processes = [], []
        for index, handle in enumerate(self.handles):
            gpus.append(self._gpu(index, handle))
            processes += self._processes(index, handle)
        return gpus, processes

    def _gpu(self, index: int, h) -> dict:
        nv = self.nv
        g: dict = {"index": index}
        name = self._try((index, "name"), nv.nvmlDeviceGetName, h)
        if name is not None:
            g["name"] = name.decode() if isinstance(name, bytes) else str(name)
        util = self._try((index, "utilization"), nv.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            g["utilization"] = float(util.gpu)
        mem = self._try((index, "memory_used_bytes"), nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            g["memory_used_bytes"], g["memory_total_bytes"] = int(mem.used), int(mem.total)
        temp = self._try((index, "temperature_c"), nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        if temp is not None:
            g["temperature_c"] = float(temp)
        for key, fn in (("power_w", nv.nvmlDeviceGetPowerUsage), ("power_limit_w", nv.nvmlDeviceGetEnforcedPowerLimit)):
            milliwatts = self._try((index, key), fn, h)
            if milliwatts is not None:
                g[key] = milliwatts / 1000.0
        for key, clock in (("sm_clock_mhz", nv.NVML_CLOCK_SM), ("mem_clock_mhz", nv.NVML_CLOCK_MEM)):
            mhz = self._try((index, key), nv.nvmlDeviceGetClockInfo, h, clock)
            if mhz is not None:
                g[key] = int(mhz)
        reasons = self._try((index, "throttle_reasons"), nv.nvmlDeviceGetCurrentClocksEventReasons, h)
        if reasons is not None:
            g["throttle_reasons"] = throttle_names(nv, reasons)
        fan = self._try((index, "fan_percent"), nv.nvmlDeviceGetFanSpeed, h)
        if fan is not None:
            g["fan_percent"] = float(fan)
        for key, counter in (("pcie_tx_kbps", nv.NVML_PCIE_UTIL_TX_BYTES), ("pcie_rx_kbps", nv.NVML_PCIE_UTIL_RX_BYTES)):
            kbps = self._try((index, key), nv.nvmlDeviceGetPcieThroughput, h, counter)
            if kbps is not None:
                g[key] = float(kbps)
        return g

    def _processes(self, index: int, h) -> list[dict]:
        seen: dict[int, dict] = {}
        for kind, fn in (("compute_processes", self.nv.nvmlDeviceGetComputeRunningProcesses),
                         ("graphics_processes", self.nv.nvmlDeviceGetGraphicsRunningProcesses)):
            for p in self._try((index, kind), fn, h) or ():
                used = getattr(p, "usedGpuMemory", None)
                row = seen.setdefault(p.pid, {"gpu_index": index, "pid": int(p.pid), "process_name": process_name(p.pid)})
                if isinstance(used, int) and used >= 0:  # None or a sentinel where the driver hides it
                    row["memory_used_bytes"] = row.get("memory_used_bytes", 0) + used
        return list(seen.values())

    def _try(self, what: tuple[int, str], fn, *args):
        try:
            value = fn(*args)
        except self.nv.NVMLError as e:  # NOT_SUPPORTED on this card, or NO_PERMISSION: leave it out
            self.unsupported[what] = str(e) or type(e).__name__
            return None
        self.unsupported.pop(what, None)
        return value


# NVML's clock event ("throttle") reason bits, by the names nvidia-smi shows.
THROTTLE_BITS = (
    ("nvmlClocksEventReasonGpuIdle", "idle"),
    ("nvmlClocksEventReasonApplicationsClocksSetting", "app_clocks"),
    ("nvmlClocksEventReasonSwPowerCap", "sw_power_cap"),
    ("nvmlClocksThrottleReasonHwSlowdown", "hw_slowdown"),
    ("nvmlClocksEventReasonSyncBoost", "sync_boost"),
    ("nvmlClocksEventReasonSwThermalSlowdown", "sw_thermal"),
    ("nvmlClocksThrottleReasonHwThermalSlowdown", "hw_thermal"),
    ("nvmlClocksThrottleReasonHwPowerBrakeSlowdown", "hw_power_brake"),
    ("nvmlClocksEventReasonDisplayClockSetting", "display_clocks"),
)


def throttle_names(nv, mask: int) -> str:
    """The reasons set in ``mask`` as comma-separated names ('' when the clocks run free)."""
    names = [name for attr, name in THROTTLE_BITS if mask & getattr(nv, attr, 0)]
    return ",".join(names)


def process_name(pid: int) -> str | None:
    import psutil

    try:
        return psutil.Process(pid).name()[:200]
    except (psutil.Error, OSError):
        return None
