"""`capcheck eval --samples`, driven as a user runs it: real PNGs with ComfyUI, A1111 and capcheck metadata,
a loopback vision server answering per image from a planted table, the store, the batch endpoint, bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eval_files import write_a1111, write_capcheck, write_comfyui, write_plain

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES

POLICY = EXAMPLES / "keichan" / "policy.yaml"
K = "keichan, 1girl, solo, upper body"
N = "keichan, 1girl, solo, upper body, standing, a girl with long blonde hair in a white room"
NEG = "worst quality, (ahoge:1.5)"
SEEDS = (42, 100, 200)
SPEC = {"prompts": {"K": K, "N": N}, "must_show": ["blonde hair", "long hair"], "must_not_show": ["ahoge"]}
ALL = ["blonde hair", "long hair"]
# The planted table: what each sample shows, per (epoch, format, seed). Every sample is framed upper body.
SHOWS = {
    0: lambda fmt, seed: ["long hair"],  # the base draws long hair, never blonde: 3 of 4 checks
    5: lambda fmt, seed: ["long hair"] if seed == 100 else ALL,  # blonde at two seeds of three
    10: lambda fmt, seed: ALL,  # every check passes
    30: lambda fmt, seed: ["blonde hair", "ahoge"] if fmt == "K" else ALL,  # K rebounds: short hair, an ahoge
}


def make_sweep(root: Path) -> dict:
    """4 epochs × 2 formats × 3 seeds from three tools, two images they cannot tell us about; returns the truth."""
    truth, key = {}, 0
    for epoch, shows in SHOWS.items():
        for fmt, prompt in (("K", K), ("N", N)):
            for seed in SEEDS:
                key += 1
                name = f"ep{epoch}_{fmt}_{seed}.png"
                if epoch in (0, 5):  # made in ComfyUI on a laptop, as the article's were
                    loras = [("chars/keichan_epoch005.safetensors", 1.0)] if epoch else []
                    write_comfyui(root / "comfy" / name, key, prompt, NEG, seed, loras)
                    rel = f"comfy/{name}"
                elif epoch == 10:
                    write_a1111(root / "forge" / name, key, prompt, NEG, seed, [("keichan-000010", 1.0)])
                    rel = f"forge/{name}"
                else:
                    write_capcheck(root / "capcheck" / name, key, prompt, NEG, seed, "keichan_epoch030.safetensors",
                                   30, fmt)
                    rel = f"capcheck/{name}"
                truth[rel] = {"framing": "upper body", "tags": shows(fmt, seed)}
    write_plain(root / "notes.png", 900)  # a screenshot: no metadata
    write_comfyui(root / "undated.png", 901, K, NEG, 1, [("keichan_final.safetensors", 1.0)])
    return truth


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "samples dir"
    truth = make_sweep(root)
    (tmp_path / "spec.yaml").write_text(json.dumps(SPEC))
    with DemoServer(DemoModel(truth, root)) as server:
        yield root, tmp_path / "spec.yaml", server


def capcheck(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def evaluate(root, spec, server, *extra):
    return capcheck("eval", "--samples", root, "--spec", spec, "--policy", POLICY, "--model", "demo-vision",
                    "--base-url", server.url, "--concurrency", "4", *extra)


def test_samples_from_three_tools_scored_as_the_table_implies(sweep):
    root, spec, server = sweep
    done = evaluate(root, spec, server, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # nothing but JSON on stdout
    assert server.stats.requests == 24  # one request per sample, the two unreadable ones never asked about
    assert data["recommended_epoch"] == 10 and data["tied_epochs"] == [5, 10]
    epochs = {e["epoch"]: e for e in data["epochs"]}
    assert {n: (e["samples"], e["pass"], e["fail"], e["unknown"]) for n, e in epochs.items()} == {
        0: (6, 18, 6, 0), 5: (6, 22, 2, 0), 10: (6, 24, 0, 0), 30: (6, 18, 6, 0)}
    assert epochs[5]["checks"] == {"framing": {"pass": 6, "fail": 0, "unknown": 0},
                                   "blonde hair": {"pass": 4, "fail": 2, "unknown": 0},
                                   "long hair": {"pass": 6, "fail": 0, "unknown": 0},
                                   "ahoge": {"pass": 6, "fail": 0, "unknown": 0}}
    assert epochs[30]["formats"]["K"]["pass"] == 6 and epochs[30]["formats"]["N"]["pass"] == 12
    assert epochs[30]["checks"]["ahoge"] == {"pass": 3, "fail": 3, "unknown": 0}  # a must-not tag seen: a fail
    warnings = data["warnings"]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("ep30 falls below ep10 (overtraining?): 18/24 vs 24/24 checks pass, p = 0.011")
    assert "fell: long hair 3/6 vs 6/6, ahoge 3/6 vs 6/6" in warnings[0]
    assert warnings[1].startswith("ep30: format N passes 12/12 checks but K 6/12 (p = 0.00686")  # C(12,6)/C(24,6)
    assert warnings[2].startswith("the baseline already shows long hair: 6/6 pass without the LoRA vs 6/6 at ep10")
    assert data["skipped"] == {
        "notes.png": "no generation metadata (no capcheck sidecar, no ComfyUI 'prompt' graph, no A1111 "
                     "'parameters' chunk)",
        "undated.png": "no epoch in the LoRA name (keichan_final); expected _epochNNN, -NNNNNN, _epNN, -epNN or _eNN"}
    assert (root / ".capcheck" / "reports" / "eval.json").exists()
    page = (root / ".capcheck" / "reports" / "eval.html").read_text()
    assert page.count("<img ") == 24 and "<svg" in page and "recommended" in page
    assert "✗ ahoge" in page  # the failed must-not check marked on its cell


def test_console_table_then_recommendation_and_a_rerun_asks_nothing(sweep):
    root, spec, server = sweep
    write_plain(root / "[red]shot[/red].png", 902)  # a file name is printed as it is, never as rich markup
    first = evaluate(root, spec, server)
    assert first.returncode == 0, first.stderr
    assert "skipped [red]shot[/red].png: no generation metadata" in first.stdout
    server.stats.reset()
    again = evaluate(root, spec, server)
    assert again.returncode == 0, again.stderr
    assert server.stats.requests == 0  # the store answers every sample
    lines = again.stdout.splitlines()
    assert any("ep10 *" in ln and "24/24 100%" in ln for ln in lines), again.stdout  # * the recommended row
    formats = lines.index(next(ln for ln in lines if ln.startswith("per prompt format")))
    assert any("ep30" in ln and "6/12" in ln and "12/12" in ln for ln in lines[formats:]), again.stdout  # K, N
    assert "capcheck eval: 24 samples · 0 asked, 24 from the store · 0 requests · openai/demo-vision" in again.stdout
    assert "skipped notes.png: no generation metadata" in again.stdout
    rec = next(ln for ln in lines if ln.startswith("recommended:"))
    assert rec.startswith("recommended: ep10 (24/24 known checks pass, 100%); tied with it: ep5, ep10 (Fisher's")
    assert lines.index(rec) > next(i for i, ln in enumerate(lines) if "blonde hair" in ln)  # the table comes first
    assert f"report: {root / '.capcheck' / 'reports' / 'eval.json'}" in again.stdout


def test_a_new_must_show_tag_asks_again_only_what_the_store_cannot_answer(sweep):
    root, spec, server = sweep
    assert evaluate(root, spec, server).returncode == 0
    server.stats.reset()
    fewer = evaluate(root, spec, server, "--must-show", "blonde hair", "--json")  # a subset: answered already
    assert fewer.returncode == 0 and server.stats.requests == 0
    assert "long hair" not in json.loads(fewer.stdout)["epochs"][0]["checks"]
    more = evaluate(root, spec, server, "--must-show", "blonde hair, blue eyes", "--json")
    assert more.returncode == 0 and server.stats.requests == 24  # blue eyes was never asked


def test_batch_backend_gives_the_live_answers(sweep):
    root, spec, server = sweep
    batch = evaluate(root, spec, server, "--backend", "batch", "--poll", "0.01", "--json")
    assert batch.returncode == 0, batch.stderr
    assert server.stats.requests == 0 and server.desk.lines_answered == 24  # all through /v1/batches
    data = json.loads(batch.stdout)
    assert data["recommended_epoch"] == 10 and data["tied_epochs"] == [5, 10]
    live = evaluate(root, spec, server, "--json")  # the batch's answers are stored under the live key
    assert live.returncode == 0 and server.stats.requests == 0
    assert json.loads(live.stdout)["epochs"] == data["epochs"]


def test_bad_input_is_one_line_and_exit_2(tmp_path, sweep):
    root, _, server = sweep
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("must_show: [blonde hair]\nmust_shw: [ahoge]\n")
    empty = tmp_path / "empty"
    write_plain(empty / "a.png", 1)
    cases = [
        (["--samples", root, "--spec", bad_spec], f"{bad_spec}: unknown key 'must_shw'"),
        (["--samples", empty], f"{empty}: no usable sample image (1 images, none with usable metadata; a.png: no "
                               "generation metadata"),
        (["--samples", root, "--epochs", "5,20"], f"{root}: no samples of epoch 20 (epochs found: 5, 10, 30)"),
        (["--samples", root, "--epochs", "five"], "--epochs: 'five' is not an epoch number"),
        (["--samples", root, "--must-show", "ahoge", "--must-not-show", "ahoge"],
         "ahoge: in both must_show and must_not_show"),
    ]
    for args, message in cases:
        done = capcheck("eval", *args, "--policy", POLICY, "--model", "demo-vision", "--base-url", server.url)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        # the one policy rule's line (which policy, and why) may come first; then the one error line
        lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("policy: ")]
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert server.stats.requests == 0


def test_epochs_with_no_saved_lora_in_the_output_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for epoch in (1, 2):
        (out / f"lora_epoch{epoch:03d}.safetensors").write_bytes(b"")
    config = tmp_path / "train.yaml"
    config.write_text(f"model_path: {tmp_path / 'model'}\noutput_dir: {out}\neval:\n  prompts:\n    K: {K}\n")
    done = capcheck("eval", "--config", config, "--epochs", "2,3", "--policy", POLICY, "--model", "demo-vision",
                    "--base-url",
                    "http://127.0.0.1:9/v1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: {out}: no saved LoRA for epoch 3 (saved epochs: 1, 2)"
    assert len(done.stderr.strip().splitlines()) <= 2  # the policy line, then the one error line


def test_copy_keeps_its_own_store(sweep, tmp_path):
    """The store travels with the samples folder: a copy answers from it too (rel paths, content hashes)."""
    root, spec, server = sweep
    assert evaluate(root, spec, server).returncode == 0
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    server.stats.reset()
    assert evaluate(moved, spec, server).returncode == 0 and server.stats.requests == 0


def test_refusals_and_filtered_answers_are_unknown_never_a_pass(tmp_path):
    from verifier.demo.server import Faults

    root = tmp_path / "samples"
    truth = make_sweep(root)
    (tmp_path / "spec.yaml").write_text(json.dumps(SPEC))
    faults = Faults(scripted={"forge/ep10_K_42.png": ["refuse_stop"], "forge/ep10_N_42.png": ["safety"]})
    with DemoServer(DemoModel(truth, root), faults) as server:
        done = evaluate(root, tmp_path / "spec.yaml", server, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    ep10 = next(e for e in data["epochs"] if e["epoch"] == 10)
    assert (ep10["samples"], ep10["pass"], ep10["fail"], ep10["unknown"]) == (6, 16, 0, 8)
    assert ep10["checks"]["blonde hair"] == {"pass": 4, "fail": 0, "unknown": 2}
    refused = {s["image"]: (s["status"], set(s["checks"].values())) for s in data["samples"] if s["epoch"] == 10
               and s["seed"] == 42}
    assert refused == {"forge/ep10_K_42.png": ("refused", {"unknown"}), "forge/ep10_N_42.png": ("refused", {"unknown"})}


def test_codex_backend_answers_the_same(sweep, tmp_path):
    """The Codex CLI as the backend (a fake `codex` executable answering from the same table): the same schema."""
    root, spec, server = sweep
    live = json.loads(evaluate(root, spec, server, "--json").stdout)
    fake = Path(__file__).parent / "fakes" / "fake_codex.py"
    wrapper = tmp_path / "bin" / "codex"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n')
    wrapper.chmod(0o755)
    index = tmp_path / "index.json"
    DemoModel(make_sweep(tmp_path / "same"), tmp_path / "same").save_index(index)  # the same pictures and table
    env_extra = {"FAKE_CODEX_INDEX": str(index), "FAKE_CODEX_POLICY": str(POLICY)}
    done = subprocess.run([sys.executable, "-m", "verifier.cli.main", "eval", "--samples", str(root), "--spec",
                           str(spec), "--policy", str(POLICY), "--backend", "codex", "--model", "fake-codex",
                           "--codex-bin", str(wrapper), "--concurrency", "4", "--json"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env_extra})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["backend"] == "codex" and data["requests"] == 24
    assert (data["recommended_epoch"], data["tied_epochs"], data["warnings"]) == (
        live["recommended_epoch"], live["tied_epochs"], live["warnings"])
    assert data["epochs"] == live["epochs"]


def test_eval_samples_never_imports_torch(sweep):
    """torch and diffusers belong to the train commands: scoring samples made elsewhere needs neither."""
    root, spec, server = sweep
    script = ("import sys\nfrom typer.testing import CliRunner\nfrom verifier.cli.main import app\n"
              f"r = CliRunner().invoke(app, ['eval', '--samples', {str(root)!r}, '--spec', {str(spec)!r}, '--policy', "
              f"{str(POLICY)!r}, '--model', 'demo-vision', '--base-url', {server.url!r}, '--json'])\n"
              "assert r.exit_code == 0, r.output\n"
              "print(sorted(m for m in ('torch', 'diffusers', 'peft') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
