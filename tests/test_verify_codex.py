"""The codex backend with a fake `codex` on PATH, for what the real CLI
(tests/test_codex_real.py) cannot show: transient failures codex does not
retry itself, the process group killed on timeout, a logged-out CLI."""

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from verifier.core.store import Store
from verifier.core.verdict import ERROR
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.demo.model import DemoModel
from verifier.errors import BackendUnavailable

from conftest import EXAMPLES

FAKE = Path(__file__).parent / "fakes" / "fake_codex.py"


@pytest.fixture
def codex_env(tmp_path, clothed47_dataset, keichan, monkeypatch):
    """`codex` on PATH, answering from the 47-image truth; returns the call log path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "codex"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    index = tmp_path / "index.json"
    DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan).save_index(index)
    log = tmp_path / "codex.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CODEX_INDEX", str(index))
    monkeypatch.setenv("FAKE_CODEX_POLICY", str(EXAMPLES / "keichan" / "policy.yaml"))
    monkeypatch.setenv("FAKE_CODEX_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    return log


def run(root, policy, **options):
    opts = VerifyOptions(**{"backend": "codex", "retry_base": 0.02, **options})
    with Store(root) as store:
        return asyncio.run(verify_dataset(root, policy, opts, store))


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_flaky_codex_is_retried(clothed47_dataset, keichan, codex_env, tmp_path, monkeypatch):
    flaky = tmp_path / "flaky"
    flaky.mkdir()
    monkeypatch.setenv("FAKE_CODEX_FLAKY_DIR", str(flaky))
    result = run(clothed47_dataset, keichan, only=["*02000[0-3].png"], concurrency=4)
    assert [r.attempts for r in result.results] == [2, 2, 2, 2]
    assert all(r.verdict.status != ERROR for r in result.results)


def test_timeout_kills_the_process(clothed47_dataset, keichan, codex_env, monkeypatch):
    monkeypatch.setenv("FAKE_CODEX_SLEEP", "30")
    result = run(clothed47_dataset, keichan, only=["*02000[0-1].png"], timeout=1.5, max_attempts=1)
    assert [r.verdict.status for r in result.results] == [ERROR, ERROR]
    assert "no answer within 1.5 s" in result.results[0].verdict.reason
    for call in calls(codex_env):
        with pytest.raises(ProcessLookupError):  # killed, not left running for 30 s
            os.kill(call["pid"], 0)


def test_missing_or_logged_out_codex_stops_the_run(clothed47_dataset, keichan, codex_env, monkeypatch):
    with pytest.raises(BackendUnavailable, match="Codex CLI not found on PATH"):
        run(clothed47_dataset, keichan, codex_bin="no-such-codex")
    monkeypatch.setenv("FAKE_CODEX_FAIL", "Not logged in. Run codex login.")
    with pytest.raises(BackendUnavailable) as exc:
        run(clothed47_dataset, keichan, concurrency=2)
    assert str(exc.value).endswith("codex: Not logged in. Run codex login.")  # codex's own line, once
    assert len(calls(codex_env)) <= 3


def test_the_tags_audit_through_codex_exec(tmp_path, monkeypatch):
    """The codex backend sends the same strict schema, `tags` object and all."""
    from captions.generic import generic_policy

    import kohya

    root = tmp_path / "kanachan"
    kohya.make(root)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    (bin_dir / "codex").chmod(0o755)
    index = tmp_path / "index.json"
    DemoModel.load(kohya.truth_file(root), root).save_index(index)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CODEX_INDEX", str(index))
    monkeypatch.setenv("FAKE_CODEX_POLICY", str(EXAMPLES / "kanachan" / "policy.yaml"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    policy = generic_policy().model_copy(update={"trigger": "kanachan"})
    result = run(root, policy, protocol="observe", aspects=["framing", "tags"], concurrency=4)
    refuted = {(r.image, f.caption) for r in result.results for f in r.verdict.fixes if not f.borderline}
    assert refuted == {(kohya.name(i), t) for i, t in kohya.HALLUCINATED.items()}
