"""The codex backend: a real `codex` subprocess (a fake one on PATH that
insists on the argument order the real CLI needs)."""

import asyncio
import json
import os
import stat
import sys
from collections import Counter
from pathlib import Path

import pytest

from verifier.core.store import Store
from verifier.core.verdict import ERROR
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.demo.model import DemoModel
from verifier.errors import BackendUnavailable

from clothed47 import EXPECTED, expected_items
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


@pytest.mark.parametrize("protocol", ["fixline", "observe"])
def test_47_images_through_codex_exec(clothed47_dataset, keichan, codex_env, protocol):
    result = run(clothed47_dataset, keichan, protocol=protocol, model="gpt-5-codex")
    found = Counter((f.aspect, f.image, f.caption) for r in result.results for f in r.verdict.fixes)
    assert dict(found) == EXPECTED
    assert {r.image: {(f.aspect, f.image, f.caption) for f in r.verdict.fixes}
            for r in result.results if r.verdict.fixes} == expected_items()
    log = calls(codex_env)
    assert len(log) == 47
    for call in log:
        argv = call["argv"]
        assert argv[0] == "exec" and argv[-3:-1] == ["-", "-i"]  # prompt on stdin, before the greedy -i
        assert argv[argv.index("-s") + 1] == "read-only" and "--skip-git-repo-check" in argv
        assert argv[argv.index("-m") + 1] == "gpt-5-codex"
        assert ("--output-schema" in argv) == (protocol == "observe")
        assert call["prompt_chars"] > 500
    assert result.protocol == protocol and result.backend == "codex"


def test_fixline_is_the_default_for_codex(clothed47_dataset, keichan, codex_env):
    result = run(clothed47_dataset, keichan, only=["*020021.png"])
    assert result.protocol == "fixline"
    argv = calls(codex_env)[0]["argv"]
    assert "-m" not in argv  # no --model: codex's own default
    assert result.results[0].raw and json.loads(result.results[0].raw)["argv"][0] == "codex"


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
    with pytest.raises(BackendUnavailable, match="Not logged in"):
        run(clothed47_dataset, keichan, concurrency=2)
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
