"""`capcheck eval --config` end to end, as a user runs it: the tiny random Anima trains 3 epochs, eval renders
2 prompts x 2 seeds x (3 epochs + the baseline), a loopback vision server answers each sample from a table this
test planted, and the report says what that table implies.

The server is the project's demo server (the openai SDK really talks to it over HTTP); only how it recognises a
sample differs: by its exact pixels, found among the rendered PNGs when the first request arrives (the samples
are sent as PNG at their own 64x64 size, so nothing is lost on the way). The table is keyed by what the sample
is (epoch, prompt format, seed), planted before anything is rendered."""

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections import defaultdict
from math import comb

import yaml
from PIL import Image

from verifier.core.observation import CANNOT
from verifier.demo.model import DemoModel, Known
from verifier.demo.server import DemoServer

from conftest import EXAMPLES, error_lines

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
PROMPTS = {"K": "keichan, 1girl, solo", "KT": "keichan, 1girl, solo, upper body, facing left"}
SHOW, HIDE = ["blonde hair", "blue eyes"], ["ahoge"]
# What each sample's prompt asks: K only the tags; KT also its framing and facing.
CHECKS = {"K": ["blonde hair", "blue eyes", "ahoge"], "KT": ["framing", "facing", "blonde hair", "blue eyes", "ahoge"]}
ASKED = {"framing": "upper body", "facing": "left"}

# The planted table: (epoch, format) -> per seed, p(ass) / f(ail) / u(nknown) for each check in CHECKS' order.
# ep0, the baseline: blue eyes already right, blonde hair and no ahoge not yet; facing never right.
# ep1, ep2 learn the character (ep2 one check better); ep3 overtrains: K loses everything, KT keeps some.
TABLE = {
    (0, "K"): ["fpf", "fpf"], (0, "KT"): ["pffpf", "pffpf"],
    (1, "K"): ["ppf", "ppp"], (1, "KT"): ["pfppp", "pfppp"],
    (2, "K"): ["ppp", "ppp"], (2, "KT"): ["pfppp", "pfppp"],
    (3, "K"): ["fff", "fff"], (3, "KT"): ["pffpf", "ufppp"],
}
SEEDS = [11, 12]


def truth(epoch: int, fmt: str, seed: int) -> dict:
    """What the stand-in model sees in one sample, so that each check comes out as the table says."""
    results = dict(zip(CHECKS[fmt], TABLE[epoch, fmt][SEEDS.index(seed)], strict=True))
    seen: dict = {"tags": [], "cannot": []}
    for check, r in results.items():
        if check in ASKED:
            seen[check] = ASKED[check] if r == "p" else None if r == "u" else {"framing": "full body",
                                                                               "facing": "right"}[check]
        elif r == "u":
            seen["cannot"].append(check)
        elif (r == "p") == (check in SHOW):  # a must-show tag passes when present, a must-not one when absent
            seen["tags"].append(check)
    return seen


def pixels(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return hashlib.sha256(repr(im.size).encode() + im.convert("RGB").tobytes()).hexdigest()


class SampleTable(DemoModel):
    """The demo model, recognising each rendered sample by its exact pixels and answering from the table."""

    def __init__(self, folder, policy):
        super().__init__({}, None, policy)
        self.folder, self.index, self.lock = folder, None, threading.Lock()

    def identify(self, data: bytes) -> Known | None:
        with self.lock:
            if self.index is None:  # the first request comes after the last sample is rendered
                self.index = {}
                for png in self.folder.glob("*.png"):
                    side = json.loads(png.with_suffix(".json").read_text())
                    key = pixels(png.read_bytes())
                    assert key not in self.index, f"{png.name} draws the same pixels as {self.index[key].key}"
                    self.index[key] = Known(png.name, truth(side["epoch"], side["format"], side["seed"]), b"")
        return self.index.get(pixels(data))

    def observe(self, known, aspects, tags=None, yes_sayer=False) -> dict:
        out = super().observe(known, aspects, tags, yes_sayer)
        for tag in known.truth["cannot"] if known else []:
            out["tags"][tag] = CANNOT
        return out


def capcheck(*args, **env):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OPENAI_API_KEY": "sk-test", **env})


def expected_counts() -> dict[int, dict[str, dict[str, int]]]:
    out: dict[int, dict] = defaultdict(lambda: defaultdict(lambda: {"pass": 0, "fail": 0, "unknown": 0}))
    for (epoch, fmt), rows in TABLE.items():
        for row in rows:
            for check, r in zip(CHECKS[fmt], row, strict=True):
                out[epoch][check][{"p": "pass", "f": "fail", "u": "unknown"}[r]] += 1
    return {e: dict(c) for e, c in out.items()}


def one_sided_fisher(a_pass, a_fail, b_pass, b_fail) -> float:
    """P(A passes at least this many | the margins): the test the report names, written out for the oracle."""
    n, total, passes = a_pass + a_fail, a_pass + a_fail + b_pass + b_fail, a_pass + b_pass
    return sum(comb(passes, x) * comb(total - passes, n - x) for x in range(a_pass, min(n, passes) + 1)) / comb(total, n)


def test_eval_config_trains_renders_verifies_and_recommends(tiny_anima, tiny_dataset, keichan, tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(
        model_path=str(tiny_anima), resolution=256, epochs=3, repeats=1, batch_size=2, lora_rank=4,
        learning_rate=2e-2, mixed_precision="no", device="cpu", output_dir=str(out), output_name="tiny",
        max_sequence_length=64, seed=3, save_every=1, sample_width=64, sample_height=64, sample_steps=2,
        eval=dict(prompts=PROMPTS, negative="ahoge, worst quality", seeds=SEEDS, must_show=SHOW, must_not_show=HIDE,
                  cfg=2.0))))
    trained = capcheck("train", tiny_dataset, "--config", config, "--allow-unverified")
    assert trained.returncode == 0, trained.stderr
    assert sorted(p.name for p in out.glob("tiny_epoch*.safetensors")) == [f"tiny_epoch00{e}.safetensors"
                                                                            for e in (1, 2, 3)]
    samples = out / "eval" / "samples"
    model = SampleTable(samples, keichan)
    with DemoServer(model) as server:
        args = ("eval", "--config", config, tiny_dataset, "--policy", POLICY, "--model", "demo", "--base-url",
                server.url, "--image-format", "png", "--json")
        run = capcheck(*args, "--processes", 2)  # rendered by two ranks (gloo), a share each; scored here
        assert run.returncode == 0, run.stderr
        assert "rendered 16 of 16 samples on 2 processes (8 + 8)" in run.stderr
        report = json.loads(run.stdout)  # --json: nothing else on stdout
        asked = server.stats.requests

        # 2 prompts x 2 seeds x (3 epochs + the baseline), each with its sidecar; one request per sample
        assert len(list(samples.glob("*.png"))) == len(list(samples.glob("*.json"))) == 16
        assert len(model.index) == 16 and asked == 16

        # the counts, per epoch and check, are the table's
        epochs = {e["epoch"]: e for e in report["epochs"]}
        assert sorted(epochs) == [0, 1, 2, 3] and all(e["samples"] == 4 for e in epochs.values())
        assert {n: e["checks"] for n, e in epochs.items()} == expected_counts()
        # ep0 6/16, ep1 13/16, ep2 14/16, ep3 5/15 (its one unknown is not scored)
        assert {n: round(e["score"], 4) for n, e in epochs.items()} == {0: 0.375, 1: 0.8125, 2: 0.875, 3: 0.3333}
        assert report["recommended_epoch"] == 2
        # tied: ep1 cannot be called worse than ep2 (p = 0.5); ep3 can (p = 0.0029)
        assert round(one_sided_fisher(14, 2, 13, 3), 4) == 0.5 and one_sided_fisher(14, 2, 5, 10) < 0.005
        assert report["tied_epochs"] == [1, 2]

        warnings = report["warnings"]
        # the overtraining after the sweet spot, naming the checks that fell (framing and facing did not)
        [fell] = [w for w in warnings if w.startswith("ep3 falls below ep2")]
        assert "5/15 vs 14/16" in fell and all(f"{c} " in fell for c in ("blonde hair 1/4", "blue eyes 2/4",
                                                                          "ahoge 1/4"))
        assert "framing" not in fell and "facing" not in fell
        # K hides nothing at ep3 but KT still shows some: 5/9 against 0/6, p = 0.042
        assert round(one_sided_fisher(5, 4, 0, 6), 3) == 0.042
        assert [w for w in warnings if w.startswith("ep3: format KT passes 5/9 checks but K 0/6")]
        # the baseline already has blue eyes 4/4: the LoRA does not earn it; blonde hair 0/4 it does
        assert [w for w in warnings if w.startswith("the baseline already shows blue eyes: 4/4")]
        assert not [w for w in warnings if "already shows blonde hair" in w]
        # facing left is never drawn
        assert "no epoch passes facing: 0 of 8 known checks (baseline included)" in warnings
        assert len(warnings) == 4, warnings

        # the report files, beside the samples
        [written] = (out / "eval" / ".capcheck").rglob("eval.json")
        assert json.loads(written.read_text())["recommended_epoch"] == 2
        assert list((out / "eval" / ".capcheck").rglob("eval.html"))

        # a second run renders nothing and asks nothing: the same report
        before = {p: p.stat().st_mtime_ns for p in samples.iterdir()}
        again = capcheck(*args)
        assert again.returncode == 0, again.stderr
        assert server.stats.requests == asked
        assert {p: p.stat().st_mtime_ns for p in samples.iterdir()} == before
        second = json.loads(again.stdout)
        assert (second["recommended_epoch"], second["tied_epochs"], second["warnings"]) == (2, [1, 2], warnings)

    # bad input, one line each, exit 2: an epoch with no saved LoRA
    bad = capcheck("eval", "--config", config, tiny_dataset, "--policy", POLICY, "--epochs", "2,7", "--model", "demo",
                   "--base-url", "http://127.0.0.1:9/v1")
    assert bad.returncode == 2 and "no saved LoRA for epoch 7 (saved epochs: 1, 2, 3)" in bad.stderr
    assert len(error_lines(bad.stderr)) == 1 and "Traceback" not in bad.stderr
