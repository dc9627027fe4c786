"""`capcheck run` with an eval: section: after training it evaluates, names the epoch, and a re-run does no work
twice (no sample rendered again, no request asked again). The tiny random Anima, a loopback vision server."""

import subprocess
import sys

import yaml

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES

POLICY = EXAMPLES / "keichan" / "policy.yaml"


def run(data, cfg, server, model):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", "run", str(data), "--policy", str(POLICY),
                           "--config", str(cfg), "--model", model, "--base-url", server.url, "--aspects", "framing"],
                          capture_output=True, text=True, timeout=600)


def test_run_trains_then_evaluates_and_a_rerun_does_nothing_twice(tiny_dataset, tiny_anima, tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({
        "model_path": str(tiny_anima), "resolution": 256, "epochs": 1, "lora_rank": 4, "mixed_precision": "no",
        "device": "cpu", "output_dir": str(out), "output_name": "keichan", "max_sequence_length": 64,
        "eval": {"prompts": {"K": "keichan, 1girl, solo, portrait"}, "seeds": [1], "steps": 2, "width": 64,
                 "height": 64, "must_show": ["blonde hair"], "must_not_show": ["ahoge"]}}))
    truth = {f"{i}.png": {"framing": "portrait" if i < 2 else "upper body"} for i in range(4)}
    with DemoServer(DemoModel(truth, tiny_dataset)) as server:
        first = run(tiny_dataset, cfg, server, "demo-vision")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "train: 4/4 steps, 1 LoRA file(s)" in first.stdout
    samples = sorted((out / "eval" / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["ep0000_K_s1_w0.0.png", "ep0001_K_s1_w1.0.png"]  # baseline + epoch 1
    # this stand-in was never told about the samples: every check unknown, and no epoch called good
    assert ("eval: 2 samples (2 asked, 0 from the store): no recommendation: no LoRA epoch has a known check"
            in first.stdout)
    assert f"  report: {out / 'eval' / '.capcheck' / 'reports' / 'eval.html'}" in first.stdout

    # a model that sees the samples: both show a blonde portrait and no ahoge
    truth.update({str(p): {"framing": "portrait", "tags": ["blonde hair"]} for p in samples})
    stamps = [p.stat().st_mtime_ns for p in samples]
    with DemoServer(DemoModel(truth, tiny_dataset)) as server:
        second = run(tiny_dataset, cfg, server, "demo-vision-2")
        asked = server.stats.requests
        third = run(tiny_dataset, cfg, server, "demo-vision-2")
        assert server.stats.requests == asked  # nothing asked again
    assert second.returncode == 0 and third.returncode == 0, second.stdout + third.stdout
    assert "train: already done on this exact dataset (4 steps)" in second.stdout
    assert "eval: 2 samples (2 asked, 0 from the store): recommended: ep1 (3/3 known checks pass, 100%)" \
        in second.stdout
    assert "eval warning: the baseline already shows blonde hair: 1/1 pass without the LoRA" in second.stdout
    assert "eval: 2 samples (0 asked, 2 from the store): recommended: ep1" in third.stdout
    assert [p.stat().st_mtime_ns for p in samples] == stamps  # no sample rendered again
