"""Apple Silicon's GPU through IOKit's registry (``ioreg``, no sudo). This machine is not a Mac, so
``ioreg_stand_in`` answers as ioreg does on an M1 (a plist of IOAccelerator entries); the real
command runs in the last test, on macOS only."""

from __future__ import annotations

import plistlib
import subprocess
import sys

import pytest

from bi_ide.fleet import system
from bi_ide.fleet.samples import parse_batches

M1 = {  # the parts of an AGXAccelerator entry the agent reads, as ioreg -a prints them
    "IOClass": "AGXAcceleratorG13G", "model": "Apple M1", "gpu-core-count": 8,
    "PerformanceStatistics": {"Device Utilization %": 37, "Renderer Utilization %": 35, "Tiler Utilization %": 12,
                              "In use system memory": 1_523_040_256, "Alloc system memory": 3_181_658_112},
}


def ioreg_stand_in(entries=(M1,), *, raw: bytes | None = None, fails: bool = False):
    """Stand-in for subprocess.run of ``ioreg`` (and ``sysctl``): no Mac here."""
    def run(argv, **kwargs):
        if fails:
            raise FileNotFoundError(argv[0])
        if argv[0] == "sysctl":
            return subprocess.CompletedProcess(argv, 0, stdout="Apple M2 Pro\n")
        assert tuple(argv) == system.IOREG and kwargs.get("timeout")
        return subprocess.CompletedProcess(argv, 0, stdout=raw if raw is not None else plistlib.dumps(list(entries)))
    return run


def test_utilisation_and_unified_memory_are_read():
    assert system.apple_gpu_reading(ioreg_stand_in()) == {"index": 0, "utilization": 37.0,
                                                           "memory_used_bytes": 1_523_040_256}


def test_the_registration_names_the_gpu_and_its_cores():
    described = system.apple_gpu(ioreg_stand_in())
    assert described["name"] == "Apple M1 GPU (8 cores)" and described["index"] == 0 and "mps" in described
    # no accelerator entry: the chip's name from sysctl
    assert system.apple_gpu(ioreg_stand_in(entries=()))["name"] == "Apple M2 Pro GPU"


@pytest.mark.parametrize("run", [
    ioreg_stand_in(fails=True),  # no ioreg
    ioreg_stand_in(raw=b"not a plist"),
    ioreg_stand_in(entries=({"IOClass": "IOAccelerator"},)),  # an entry without statistics
    ioreg_stand_in(entries=({"PerformanceStatistics": {"Renderer Utilization %": 3}},)),
])
def test_unreadable_statistics_mean_no_reading_and_no_error(run):
    assert system.apple_gpu_reading(run) is None


def test_a_mac_sample_carries_the_gpu_and_the_hub_accepts_it(monkeypatch):
    read = system.apple_gpu_reading
    monkeypatch.setattr(system, "apple_gpu_reading", lambda: read(ioreg_stand_in()))
    machine = system.Machine()
    machine.apple = True
    sample = machine.sample()
    assert sample["gpus"][-1] == {"index": 0, "utilization": 37.0, "memory_used_bytes": 1_523_040_256}
    (batch,) = parse_batches([{"key": "b1", "samples": [sample]}])
    assert batch.gpus[-1]["utilization"] == 37.0
    machine.close()


@pytest.mark.skipif(sys.platform != "darwin", reason="needs macOS's ioreg")
def test_the_real_ioreg_on_a_mac():
    reading = system.apple_gpu_reading()
    if system.Machine().apple:  # Apple Silicon: the GPU's statistics are there
        assert reading is not None and 0 <= reading["utilization"] <= 100
