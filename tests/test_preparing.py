"""The workers that prepare images: a head start while the backend opens, a lower priority than the
run they serve, and a start that does not import the CLI again (issue 19)."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier.core.options import VerifyOptions, backend_identity, open_backend
from verifier.core.preparing import Preparer
from verifier.core.store import Store
from verifier.core.verify import Verifier
from verifier.core.worker import WORKER_NICE
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer
from verifier.errors import BackendUnavailable

ROOT = Path(__file__).resolve().parent.parent


def _thumbs(root: Path) -> int:
    return len(list((root / ".capcheck" / "reports" / "thumbs").glob("*.jpg")))


def test_the_first_wave_is_prepared_while_the_backend_opens(clothed47_dataset, keichan):
    """Opening the backend imports the SDK (about 1 s of one core). The opener here blocks the event
    loop until the first wave's thumbnails exist, as a slow import would: they are made meanwhile,
    by images handed to the workers before the opening began (without the head start it waits 60 s
    for nothing)."""
    model = DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)
    seen: list[int] = []
    with DemoServer(model) as server, Store(clothed47_dataset) as store:
        options = VerifyOptions(model="demo-vision", base_url=server.url, concurrency=4)

        def opener():
            deadline = time.monotonic() + 60
            while _thumbs(clothed47_dataset) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            seen.append(_thumbs(clothed47_dataset))
            return open_backend(options)

        verifier = Verifier(clothed47_dataset, keichan, options, store)
        run = asyncio.run(verifier.run(backend_identity(options), opener))
    assert seen[0] >= 4  # a wave: --concurrency requests for the one server
    assert len(run.asked) == 47 and run.requests == 47  # nothing prepared twice, nothing lost


def test_a_backend_that_will_not_open_leaves_no_head_start_behind(clothed47_dataset, keichan, caplog):
    """The head start's images were unreadable and the backend then refused to open: the run raises
    that one error, and no prepared (or failed) image is left for asyncio to complain about."""
    for png in sorted(clothed47_dataset.rglob("*.png"))[:8]:
        png.write_bytes(b"not a png")
    options = VerifyOptions(model="demo-vision", base_url="http://127.0.0.1:9/v1", concurrency=4)

    def opener():
        time.sleep(2)  # the workers fail on the broken files meanwhile
        raise BackendUnavailable("http://127.0.0.1:9/v1", "connection refused")

    with Store(clothed47_dataset) as store, caplog.at_level(logging.ERROR, logger="asyncio"):
        verifier = Verifier(clothed47_dataset, keichan, options, store)
        with pytest.raises(BackendUnavailable):
            asyncio.run(verifier.run(backend_identity(options), opener))
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_workers_run_below_the_run_they_serve():
    """The run's own process sends every request; the workers take what it leaves."""
    preparer = Preparer(20, workers=2)
    try:
        pids: set[int] = set()  # a worker that has answered a task has run its initializer
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            pids |= {f.result(timeout=60) for f in [preparer._pool.submit(os.getpid) for _ in range(8)]}
        assert len(pids) == 2
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} == {min(19, own + WORKER_NICE)}
    finally:
        preparer.close()


def test_a_worker_imports_neither_asyncio_nor_sqlite_nor_the_cli():
    """The forkserver preloads the worker's module alone; each worker is a fork of it."""
    preparer = Preparer(20, workers=2)
    try:
        probe = "sorted(m for m in ('asyncio', 'sqlite3', 'typer', 'openai') if m in __import__('sys').modules)"
        assert preparer._pool.submit(eval, probe).result(timeout=60) == []  # a builtin: nothing of ours to import
    finally:
        preparer.close()


def test_the_console_script_does_not_import_the_cli_into_every_worker():
    """multiprocessing runs the `capcheck` script again as `__mp_main__` in each worker: the script's
    module must not be the one that imports every command (typer, rich)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'capcheck = "verifier.cli:main"' in text
    probe = "import sys, verifier.cli; print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
