"""The machine a run trains on: device and precision choice, peak FLOPS for MFU, GPU readings."""

from __future__ import annotations

import math
import os

import torch

from bi_ide.errors import ConfigError

# Dense bf16/fp16 tensor-core TFLOPS with fp32 accumulation, from the vendors' datasheets
# (approximate; sparsity not counted). Matched against torch.cuda.get_device_name().
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "RTX 5090": 209.5,
    "RTX 4090": 165.2,
    "RTX 4050 Laptop": 48.0,
    "RTX 4050": 48.0,
}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA GPU here; use device=auto or device=cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps but Apple MPS is not available here; use device=auto or device=cpu")
    return torch.device(name)


def pick_precision(device: torch.device, name: str) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("precision=fp16 is for GPUs; use bf16 or fp32 on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def apply_caps(device: torch.device, cpu_percent: int, gpu_percent: int) -> None:
    """The seed's cpu/gpu percent caps: torch threads, and the CUDA memory fraction."""
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, math.floor(cores * cpu_percent / 100)))
    if device.type == "cuda" and gpu_percent < 100:
        torch.cuda.set_per_process_memory_fraction(gpu_percent / 100, device)


def peak_flops(device: torch.device) -> float | None:
    """Peak FLOP/s of the device for MFU, or None when unknown (CPU, MPS, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


class GPUReader:
    """Utilisation, memory and temperature of the run's GPU through NVML; nothing without one."""

    def __init__(self, device: torch.device):
        self.handle = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.nvml = pynvml
        except Exception:  # no NVML library or driver: training goes on without GPU readings
            self.handle = None

    def read(self) -> dict[str, float]:
        if self.handle is None:
            return {}
        nv = self.nvml
        try:
            util = nv.nvmlDeviceGetUtilizationRates(self.handle)
            mem = nv.nvmlDeviceGetMemoryInfo(self.handle)
            temp = nv.nvmlDeviceGetTemperature(self.handle, nv.NVML_TEMPERATURE_GPU)
        except nv.NVMLError:
            return {}
        return {"gpu_util": float(util.gpu), "gpu_mem_gb": mem.used / 2**30, "gpu_temp_c": float(temp)}
