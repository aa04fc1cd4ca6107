"""The agent's buffer and backoff against a hub address where nothing listens (real refused
connections), and its batches in a store it reaches."""

from __future__ import annotations

import threading
import time

from bi_ide.fleet.agent import Agent, default_worker_id
from bi_ide.fleet.system import Machine
from bi_ide.hub.client import HubClient
from bi_ide.hub.process import free_port


def test_buffer_drops_the_oldest_and_backs_off_with_a_cap():
    with HubClient(f"http://127.0.0.1:{free_port()}", "bi_unused", timeout_s=2, retries=0) as nobody:
        agent = Agent(nobody, Machine(), worker_id="box", max_batches=5, max_backoff_s=0.2)
        waits = []
        for _ in range(8):
            agent._retry_at = 0.0  # try at every step, to see each wait the backoff picks
            agent.step()
            waits.append(round(agent._retry_at - time.monotonic(), 1))
    assert len(agent.buffer) == 5 and agent.counters.dropped_batches == 3
    assert [b["key"].split(":")[1] for b in agent.buffer] == ["4", "5", "6", "7", "8"]  # the newest kept
    assert agent.counters.failed_attempts == 8 and max(waits) <= 0.2  # never longer than the cap
    report = agent._reconnect_report()
    assert report["failed_attempts"] == 8 and report["dropped_batches"] == 3


def test_agent_sends_keyed_batches_to_a_store(store):
    agent = Agent(store, Machine(), worker_id="box", interval_s=0.05, batch_samples=2)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    counters = agent.run(stop)
    assert store.get_worker("box")["cpu_count"] >= 1
    stored = store.count_samples("box")
    assert stored["machine"] == counters.samples and counters.sent_batches == (counters.samples + 1) // 2
    assert counters.duplicate_batches == 0 and not agent.buffer


def test_default_worker_id_from_the_hostname():
    assert default_worker_id("RTX-5090.local") == "RTX-5090-local"
    assert default_worker_id("...") == "worker"
    assert len(default_worker_id("x" * 100)) == 64


def test_backlog_goes_in_requests_of_bounded_size(store):
    agent = Agent(store, Machine(), worker_id="box")
    agent.buffer.extend({"key": f"b:{i}", "samples": [{"time": time.time()}] * 600} for i in range(5))
    assert [len(b["samples"]) for b in agent._chunk()] == [600, 600, 600]  # 1,800 of at most 2,000
    agent.buffer.clear()
    agent.buffer.extend({"key": f"s:{i}", "samples": [{"time": time.time()}]} for i in range(450))
    assert len(agent._chunk()) == 200
