"""Device and precision choice, MFU's peak table, and GPU readings through NVML."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from bi_ide.errors import ConfigError
from bi_ide.training.hardware import GPUReader, peak_flops, pick_device, pick_precision


def test_cpu_choices():
    cpu = torch.device("cpu")
    assert pick_precision(cpu, "auto") == torch.float32
    assert pick_precision(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 is for GPUs"):
        pick_precision(cpu, "fp16")
    assert peak_flops(cpu) is None  # no MFU on the CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_one_is_a_clear_error():
    assert pick_device("auto").type in ("cpu", "mps")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        pick_device("cuda")


def test_no_gpu_reads_nothing():
    assert GPUReader(torch.device("cpu")).read() == {}


def fake_nvml(temperature=71.0, fail_reads=False):
    """A stand-in for the NVML library (module pynvml), for machines without an NVIDIA GPU."""
    nvml = types.ModuleType("pynvml")  # named as the real module so GPUReader's import finds it

    class NVMLError(Exception):
        pass

    def read(value):
        def call(*_):
            if fail_reads:
                raise NVMLError("GPU is lost")
            return value
        return call

    nvml.NVMLError = NVMLError
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.nvmlInit = lambda: None
    nvml.nvmlDeviceGetHandleByIndex = lambda index: f"handle-{index}"
    nvml.nvmlDeviceGetUtilizationRates = read(types.SimpleNamespace(gpu=87, memory=40))
    nvml.nvmlDeviceGetMemoryInfo = read(types.SimpleNamespace(used=6 * 2**30, total=24 * 2**30))
    nvml.nvmlDeviceGetTemperature = read(temperature)
    return nvml


def test_nvml_readings_are_parsed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    reading = GPUReader(torch.device("cuda", 0)).read()
    assert reading == {"gpu_util": 87.0, "gpu_mem_gb": 6.0, "gpu_temp_c": 71.0}


def test_a_failing_gpu_read_does_not_stop_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(fail_reads=True))
    assert GPUReader(torch.device("cuda", 0)).read() == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_real_nvml_without_a_gpu_reads_nothing():
    # The real library: nvmlInit raises NVMLError_LibraryNotFound here, and the reader stays empty.
    assert GPUReader(torch.device("cuda", 0)).read() == {}


@pytest.mark.gpu
def test_real_nvml_on_a_gpu():
    reading = GPUReader(torch.device("cuda", 0)).read()
    assert 0 <= reading["gpu_util"] <= 100 and reading["gpu_mem_gb"] > 0 and 10 < reading["gpu_temp_c"] < 110
    assert peak_flops(torch.device("cuda", 0)) is not None or "unlisted GPU"
