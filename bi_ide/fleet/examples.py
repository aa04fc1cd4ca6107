"""A small example fleet, registered through the fleet's own Store API: a 6 GB laptop, maybe an RTX box.

What the council's fleet evidence reads in tests, the council benchmark and demonstrations,
without running agents: each machine registers as an agent would and sends one sample now.
"""

from __future__ import annotations

import time

GB = 1 << 30


def example_fleet(store, *, laptop_gb: float = 6, box_gb: float | None = None, temperature: float = 60.0) -> list[str]:
    """A Windows laptop with one RTX 4050 (``laptop_gb``), and with ``box_gb`` an RTX 5090 box; their ids."""
    machines = [("laptop", "win-laptop", "Windows", "RTX 4050 Laptop GPU", laptop_gb, {"kind": "laptop"})]
    if box_gb:
        machines.append(("rtx-box", "rtx-box", "Linux", "RTX 5090", box_gb, {"kind": "trainer"}))
    for worker_id, host, system, gpu, gb, labels in machines:
        memory = int(gb * GB)
        store.register_worker(worker_id, hostname=host, os=system, gpus=[{"name": gpu, "memory_total_bytes": memory}],
                              labels=labels)
        sample = {"time": time.time(), "gpus": [{"index": 0, "name": gpu, "memory_total_bytes": memory,
                                                  "temperature_c": temperature}]}
        store.write_samples(worker_id, [{"key": f"example-{worker_id}-{time.time_ns()}", "samples": [sample]}])
    return [m[0] for m in machines]
