"""The real Codex CLI (npm @openai/codex, the version `.ci/run` pins) against
the demo server's Responses-API endpoint on loopback, in a CODEX_HOME made
here. The fake in tests/fakes stays only for what the real one cannot show."""

import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest

from verifier.core.store import Store
from verifier.core.verdict import ERROR
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults
from verifier.errors import BackendUnavailable

PINNED = "0.169.0"
ONLY = ["*0200[0-1]?.png", "*020021.png"]  # 21 images: a real codex process costs ~0.5 s of CPU each
KEY_ENV = "CAPCHECK_LOOP_KEY"


def _version() -> str | None:
    if shutil.which("codex") is None:
        return None
    out = subprocess.run(["codex", "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split()[-1] if out.split() else None


pytestmark = pytest.mark.skipif(_version() != PINNED, reason=f"the Codex CLI {PINNED} is not installed "
                                                               f"(npm install -g @openai/codex@{PINNED})")


@pytest.fixture
def model(clothed47_dataset, keichan):
    return DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)


def codex_home(tmp_path, url: str, model: str = "demo-vision") -> str:
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "loop"\n\n[model_providers.loop]\nname = "loop"\n'
        f'base_url = "{url}"\nwire_api = "responses"\nenv_key = "{KEY_ENV}"\n')
    return str(home)


@pytest.fixture
def loop(tmp_path, model, monkeypatch):
    """A demo server and a CODEX_HOME pointing codex at it."""
    server = DemoServer(model, Faults()).start()
    monkeypatch.setenv("CODEX_HOME", codex_home(tmp_path, server.url))
    monkeypatch.setenv(KEY_ENV, "loopback")
    yield server
    server.stop()


def run(root, policy, **options):
    opts = VerifyOptions(**{"backend": "codex", "retry_base": 0.05, "concurrency": 2, "only": ONLY, **options})
    with Store(root) as store:
        return asyncio.run(verify_dataset(root, policy, opts, store))


def fixes(result):
    return {r.image: sorted((f.aspect, f.image, f.caption) for f in r.verdict.fixes) for r in result.results}


@pytest.mark.parametrize("protocol", ["fixline", "observe"])
def test_real_codex_gives_the_openai_backends_verdicts(clothed47_dataset, keichan, loop, protocol, tmp_path):
    codex = run(clothed47_dataset, keichan, protocol=protocol)
    assert loop.stats.requests == len(codex.results) == 21
    assert all(r.verdict.status != ERROR for r in codex.results)
    live = run(clothed47_dataset, keichan, backend="openai", model="demo-vision", base_url=loop.url,
               protocol=protocol)
    assert fixes(codex) == fixes(live) and any(fixes(live).values())
    assert codex.backend == "codex" and codex.model == "demo-vision"  # the model codex's header named
    assert all(r.total_tokens and r.total_tokens > 100 for r in codex.results)  # `tokens used N`, not 0
    assert codex.total_tokens() == sum(r.total_tokens for r in codex.results)
    home = os.environ["CODEX_HOME"]
    assert not os.path.exists(os.path.join(home, "sessions"))  # --ephemeral: no image copies left behind


def test_verdicts_are_keyed_by_the_model_codex_reports(clothed47_dataset, keichan, loop, tmp_path, monkeypatch):
    run(clothed47_dataset, keichan, only=["*020021.png"])
    loop.stats.reset()
    again = run(clothed47_dataset, keichan, only=["*020021.png"])
    assert loop.stats.requests == 0 and again.results[0].source == "store"
    monkeypatch.setenv("CODEX_HOME", codex_home(tmp_path, loop.url, model="demo-vision-2"))  # config switched
    switched = run(clothed47_dataset, keichan, only=["*020021.png"])
    assert loop.stats.requests == 1 and switched.model == "demo-vision-2"  # asked again, not reused
    with Store(clothed47_dataset) as store:
        assert sorted(r["model"] for r in store.verdicts()) == ["demo-vision", "demo-vision-2"]


@pytest.mark.parametrize("fault, said", [
    ("401", "unexpected status 401 Unauthorized"),
    ("quota", "Quota exceeded"),
    ("no_model", "The requested model 'demo-vision' is not supported"),
])
def test_errors_retrying_cannot_fix_stop_at_once_with_codex_own_line(clothed47_dataset, keichan, model, tmp_path,
                                                                      monkeypatch, fault, said):
    truth = json.loads((clothed47_dataset / "truth.json").read_text())
    with DemoServer(model, Faults(scripted={k: [fault] * 50 for k in truth})) as server:
        monkeypatch.setenv("CODEX_HOME", codex_home(tmp_path, server.url))
        monkeypatch.setenv(KEY_ENV, "loopback")
        with pytest.raises(BackendUnavailable) as exc:
            run(clothed47_dataset, keichan, concurrency=1, max_attempts=4)
        requests = server.stats.requests
    message = str(exc.value)
    assert said in message and "\n" not in message, message
    # one codex process (codex's own retries of a 401 included), not 4 attempts of it per image
    assert requests <= 6, requests


def test_missing_key_variable_is_not_retried(clothed47_dataset, keichan, loop, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BackendUnavailable, match=f"codex: Missing environment variable: `{KEY_ENV}`"):
        run(clothed47_dataset, keichan, concurrency=1)
    assert loop.stats.requests == 0


def test_unreachable_provider_stops_in_seconds_saying_what_codex_was_doing(clothed47_dataset, keichan, tmp_path,
                                                                           monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CODEX_HOME", codex_home(tmp_path, f"http://127.0.0.1:{port}/v1"))
    monkeypatch.setenv(KEY_ENV, "loopback")
    unraisable = []  # what a transport left open says when it is collected after its loop closed
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable) as exc:
        run(clothed47_dataset, keichan, timeout=4, concurrency=2)
    assert time.monotonic() - t0 < 20
    assert "waiting for network" in str(exc.value) and "is the server running?" in str(exc.value)  # stderr kept
    # the other codex, stopped with the run (cancelled again while it was being reaped), left no pipe open
    gc.collect()
    assert [f"{u.exc_type.__name__}: {u.exc_value}" for u in unraisable] == []


def test_timeout_keeps_what_codex_said(clothed47_dataset, keichan, model, tmp_path, monkeypatch):
    with DemoServer(model, Faults(scripted={"02_clothed_pose/available/020021.png": ["hang", "ok"]}, hang=30)) as srv:
        monkeypatch.setenv("CODEX_HOME", codex_home(tmp_path, srv.url))
        monkeypatch.setenv(KEY_ENV, "loopback")
        result = run(clothed47_dataset, keichan, only=["*020021.png", "*020000.png"], timeout=6, max_attempts=2)
    by = {r.image.rsplit("/", 1)[1]: r for r in result.results}
    assert by["020000.png"].attempts == 1 and by["020021.png"].attempts == 2
    assert Counter(r.verdict.status for r in result.results)[ERROR] == 0


def test_without_a_model_in_the_config_the_reported_one_keys_the_verdicts(clothed47_dataset, keichan, loop, tmp_path,
                                                                          monkeypatch):
    home = tmp_path / "codex-home"
    config = home / "config.toml"
    config.write_text("\n".join(ln for ln in config.read_text().splitlines() if not ln.startswith("model =")))
    three = ["*02000[0-2].png"]
    first = run(clothed47_dataset, keichan, only=three, concurrency=1)
    reported = first.model
    assert reported not in ("default", "demo-vision") and all(r.model == reported for r in first.results)
    loop.stats.reset()
    again = run(clothed47_dataset, keichan, only=three, concurrency=1)
    # planned as "default"; the first answer names the model, and the rest stand in the store under it
    assert loop.stats.requests == 1 and [r.source for r in again.results].count("store") == 2
    with Store(clothed47_dataset) as store:
        assert {r["model"] for r in store.verdicts()} == {reported}
