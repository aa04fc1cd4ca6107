"""Fixtures shared by the tests: an in-memory store, a store file, a free port, Chromium.

Every test runs without the developer's own workbench settings: BI_IDE_HUB and BI_IDE_TOKEN are
unset and BI_IDE_DB points at a file in the test's tmp_path, so no test reads or writes the
checkout's data/ or reaches a real hub.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
WORKBENCH_ENV = ("BI_IDE_DB", "BI_IDE_HUB", "BI_IDE_TOKEN")


@pytest.fixture(autouse=True)
def isolated_workbench(monkeypatch, tmp_path):
    """Keep the developer's store, hub and token out of every test."""
    for name in WORKBENCH_ENV:
        monkeypatch.delenv(name, raising=False)
    # The local token (hub.token) lives beside the store file, so it lands in tmp_path too.
    monkeypatch.setenv("BI_IDE_DB", str(tmp_path / "workbench.duckdb"))


@pytest.fixture
def tmp_db(tmp_path) -> Path:
    """The store file BI_IDE_DB points at in this test (not created yet)."""
    return tmp_path / "workbench.duckdb"


@pytest.fixture
def store():
    """A migrated in-memory Store, closed after the test."""
    from bi_ide.store import Store

    with Store(memory=True) as s:
        yield s


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium for Playwright (`executable_path=`); skips the test where it is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: install it (Debian: apt-get install chromium) to run the browser tests")
    return str(CHROMIUM)


TINY_CODE = textwrap.dedent('''
    def fibonacci(n):
        """The n-th Fibonacci number."""
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a


    class Stack:
        def __init__(self):
            self.items = []

        def push(self, item):
            self.items.append(item)

        def pop(self):
            return self.items.pop()
''')


@pytest.fixture(scope="session", name="corpus")
def tiny_corpus(tmp_path_factory) -> str:
    """A tiny corpus folder: the Quran (a pinned package) and fixed code, the same tokens on every machine."""
    from bi_ide.training.corpus import prepare_corpus

    root = tmp_path_factory.mktemp("corpus")
    code = root / "code"
    code.mkdir()
    for i in range(12):
        (code / f"module_{i}.py").write_text(TINY_CODE.replace("fibonacci", f"fibonacci_{i}").replace("Stack", f"Stack{i}"))
    prepare_corpus(["builtin:quran", str(code)], root / "tiny", vocab_size=512, max_bytes_per_source=200_000,
                   val_fraction=0.1, seed=0)
    return str(root / "tiny")


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(chromium_path):
    """One headless Chromium per test module (Playwright driving Debian's binary).

    Not per session: Playwright's sync API keeps an event loop running in this thread while it is
    open, and later tests that call asyncio.run() would fail.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def start_hub(tmp_path, free_port):
    """Start a real hub (`bi-ide serve`) on a store file; its process group is stopped afterwards."""
    from bi_ide.hub.process import HubProcess

    hubs = []

    def start(db: Path) -> HubProcess:
        hub = HubProcess(db, port=free_port, log=tmp_path / "hub.log")
        hubs.append(hub)
        return hub.start()

    yield start
    for hub in hubs:
        hub.stop()


def pytest_collection_modifyitems(config, items):
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch  # only when a gpu test is collected: importing torch costs seconds

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    for item in gpu_tests:
        item.add_marker(skip)
