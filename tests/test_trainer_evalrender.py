"""Rendering the eval matrix (trainer/evalrender.py) on the tiny random Anima, CPU.

The LoRA files are the trainer's own format (lora.save_lora), with random
weights per epoch, so every epoch draws visibly different images; the
oracles load each one into a fresh model by another path (the trainer's
resume loader; diffusers' own load_lora_adapter for the strength)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from trainer.checkpoint import lora_path
from trainer.config import EvalConfig, TrainConfig, load_config
from trainer.errors import TrainError
from trainer.evalrender import plan_samples, render, saved_epochs

RANK, ALPHA = 4, 2.0


def make_lora(tiny_anima, out, epoch: int, seed: int) -> None:
    from diffusers import CosmosTransformer3DModel

    from trainer.lora import add_lora, save_lora

    model = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in add_lora(model, RANK, ALPHA):
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    save_lora(lora_path(out, "tiny", epoch), model, RANK, ALPHA, {"capcheck_epoch": str(epoch)})


def eval_config(tiny_anima, out, **spec) -> TrainConfig:
    ev = dict(prompts={"K": "keichan, 1girl, solo", "KT": "keichan, 1girl, solo, blonde hair, upper body"},
              negative="ahoge, worst quality", seeds=[1, 2], strengths=[0.5, 1.0], steps=2)
    return TrainConfig(model_path=str(tiny_anima), mixed_precision="no", device="cpu", output_dir=str(out),
                       output_name="tiny", max_sequence_length=64, sample_width=64, sample_height=64,
                       sample_cfg_scale=3.0, eval=EvalConfig(**{**ev, **spec}))


@pytest.fixture(scope="module")
def loras(tiny_anima, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalrender") / "out"
    for epoch in (1, 2, 3):
        make_lora(tiny_anima, out, epoch, seed=epoch)
    (out / "tiny_step000010.safetensors").write_bytes(b"")  # a step save: not an epoch
    (out / "other_epoch004.safetensors").write_bytes(b"")  # another run's name
    return out


@pytest.fixture(scope="module")
def rendered(tiny_anima, loras):
    cfg = eval_config(tiny_anima, loras)
    calls = []
    paths = render(cfg, None, progress=lambda done, total: calls.append((done, total))).pngs
    return cfg, paths, calls


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def fresh_sample(tiny_anima, cfg, fmt: str, seed: int, lora=None, strength: float = 1.0) -> np.ndarray:
    """The oracle: a freshly loaded model, this one LoRA loaded by another path, the trainer's sampler."""
    from trainer.encode import encode_text
    from trainer.lora import add_lora, from_comfy, load_comfy_lora
    from trainer.models import load_anima
    from trainer.sample import sample

    parts = load_anima(cfg, torch.device("cpu"), torch.float32)
    if lora is not None and strength == 1.0:
        add_lora(parts.transformer, RANK, ALPHA)
        load_comfy_lora(parts.transformer, lora)
    elif lora is not None:  # diffusers' own loader and adapter weights
        from safetensors.torch import load_file

        weights, alphas = from_comfy(load_file(str(lora)))
        parts.transformer.load_lora_adapter(weights, prefix="transformer", network_alphas=alphas, adapter_name="x")
        parts.transformer.set_adapters(["x"], weights=[strength])
    ev = cfg.eval
    ctx = encode_text(parts, [ev.prompts[fmt]], 64, torch.device("cpu"))
    neg = encode_text(parts, [ev.negative], 64, torch.device("cpu"))
    image = sample(parts.transformer, parts.vae, ctx, neg, width=64, height=64, steps=2, cfg=3.0, seed=seed,
                   timestep_shift=cfg.timestep_shift, device=torch.device("cpu"), dtype=torch.float32)
    return np.asarray(image)


def test_saved_epochs_reads_the_trainers_file_names_without_torch(loras, tiny_anima):
    cfg = eval_config(tiny_anima, loras)
    assert {e: p.name for e, p in saved_epochs(cfg).items()} == {
        1: "tiny_epoch001.safetensors", 2: "tiny_epoch002.safetensors", 3: "tiny_epoch003.safetensors"}
    code = ("import sys; from trainer.config import TrainConfig; from trainer.evalrender import saved_epochs; "
            f"print(sorted(saved_epochs(TrainConfig(model_path='m', output_dir={str(loras)!r}, output_name='tiny')))"
            ", 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[1,", "2,", "3]", "False"]


def test_the_matrix_is_rendered_with_a_sidecar_per_sample(rendered):
    cfg, paths, calls = rendered
    # 2 formats x 2 seeds x (3 epochs x 2 strengths + the baseline once: no LoRA, strength moot)
    assert len(paths) == 2 * 2 * (3 * 2 + 1) == 28 and all(p.is_file() for p in paths)
    assert calls[-1] == (28, 28) and len(calls) == 28
    names = {p.name for p in paths}
    assert {"ep0000_K_s1_w0.0.png", "ep0002_KT_s2_w0.5.png", "ep0003_K_s1_w1.0.png"} <= names
    assert paths[0].parent == cfg.path(cfg.output_dir) / "eval" / "samples"
    side = json.loads(paths[0].parent.joinpath("ep0002_KT_s2_w0.5.json").read_text())
    assert {k: v for k, v in side.items() if k != "render_key"} == {
        "capcheck_sample": 1, "prompt": "keichan, 1girl, solo, blonde hair, upper body",
        "negative": "ahoge, worst quality", "format": "KT", "seed": 2, "steps": 2, "cfg": 3.0, "width": 64,
        "height": 64, "lora": "tiny_epoch002.safetensors", "strength": 0.5, "epoch": 2}
    base = json.loads(paths[0].parent.joinpath("ep0000_K_s1_w0.0.json").read_text())
    assert base["lora"] is None and base["epoch"] == 0 and base["strength"] == 0.0
    assert Image.open(paths[0]).size == (64, 64)
    # every epoch and strength draws its own image; the seeds differ too
    folder = paths[0].parent
    images = [pixels(folder / f"ep{e:04d}_K_s1_w{w}.png") for e, w in [(0, 0.0), (1, 1.0), (2, 1.0), (2, 0.5)]]
    assert all(not np.array_equal(a, b) for i, a in enumerate(images) for b in images[i + 1:])
    assert not np.array_equal(pixels(folder / "ep0001_K_s1_w1.0.png"), pixels(folder / "ep0001_K_s2_w1.0.png"))


def test_each_swapped_epoch_equals_a_fresh_load_of_that_lora(rendered, tiny_anima, loras):
    """Epochs 2 and 3 were sampled after 1 and 2 on the one model: any leak would show against a fresh load."""
    cfg, paths, _ = rendered
    folder = paths[0].parent
    assert np.array_equal(pixels(folder / "ep0000_KT_s2_w0.0.png"), fresh_sample(tiny_anima, cfg, "KT", 2))
    for epoch in (2, 3):
        lora = lora_path(loras, "tiny", epoch)
        assert np.array_equal(pixels(folder / f"ep{epoch:04d}_K_s1_w1.0.png"),
                              fresh_sample(tiny_anima, cfg, "K", 1, lora))
    assert np.array_equal(pixels(folder / "ep0003_KT_s1_w0.5.png"),
                          fresh_sample(tiny_anima, cfg, "KT", 1, lora_path(loras, "tiny", 3), strength=0.5))


def test_a_rerun_renders_only_what_is_missing_or_stale(rendered, tiny_anima, loras):
    cfg, paths, _ = rendered
    folder = paths[0].parent
    before = {p: p.stat().st_mtime_ns for p in paths}
    calls = []
    assert render(cfg, None, progress=lambda d, t: calls.append(t)).pngs == paths and calls == []  # nothing to do
    assert {p: p.stat().st_mtime_ns for p in paths} == before
    (folder / "ep0001_K_s2_w0.5.json").unlink()  # an image whose sidecar is gone
    (folder / "ep0001_KT_s1_w1.0.json").write_text("{")  # a torn sidecar
    render(cfg, None, progress=lambda d, t: calls.append(t))
    assert calls == [2, 2]
    # a different setting (steps) makes every sample stale; only the chosen epochs are planned
    stale = [p.name for c, p, _, present in plan_samples(eval_config(tiny_anima, loras, steps=3), [2]) if not present]
    assert len(stale) == 2 * 2 * (2 + 1) and all(n.startswith(("ep0000", "ep0002")) for n in stale)


def test_a_retrained_epoch_file_is_rendered_again(tiny_anima, loras, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny_epoch001.safetensors").write_bytes(lora_path(loras, "tiny", 1).read_bytes())
    cfg = eval_config(tiny_anima, out, prompts={"K": "keichan"}, seeds=[1], strengths=[1.0])
    first = render(cfg, [1]).pngs
    old = pixels(first[1])
    make_lora(tiny_anima, out, 1, seed=99)  # the same name, new weights (a second training run)
    assert [p.name for c, p, _, present in plan_samples(cfg) if not present] == ["ep0001_K_s1_w1.0.png"]
    render(cfg, [1])
    assert not np.array_equal(pixels(first[1]), old)


def test_a_render_killed_between_image_and_sidecar_leaves_no_sidecar_without_its_image(tiny_anima, loras, tmp_path):
    """A real child process, SIGKILLed by itself when it renames the third sample's sidecar into place."""
    out = tmp_path / "out"
    out.mkdir()
    for epoch in (1, 2):
        (out / f"tiny_epoch{epoch:03d}.safetensors").write_bytes(lora_path(loras, "tiny", epoch).read_bytes())
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        from trainer.config import EvalConfig, TrainConfig
        from trainer import evalrender
        cfg = TrainConfig(model_path={str(tiny_anima)!r}, mixed_precision="no", device="cpu",
                          output_dir={str(out)!r}, output_name="tiny", max_sequence_length=64, sample_width=64,
                          sample_height=64, eval=EvalConfig(prompts={{"K": "keichan"}}, seeds=[1, 2], steps=1))
        replace, seen = os.replace, []
        def dying_replace(src, dst):
            if str(dst).endswith(".json"):
                seen.append(dst)
                if len(seen) == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst)
        evalrender.os.replace = dying_replace
        evalrender.render(cfg)
    """))
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.returncode == -9, child.stderr
    folder = out / "eval" / "samples"
    pngs, sides = {p.stem for p in folder.glob("*.png")}, {p.stem for p in folder.glob("*.json")}
    assert len(sides) == 2 and len(pngs) == 3 and sides < pngs  # the third image is there, its sidecar is not
    cfg = TrainConfig(model_path=str(tiny_anima), mixed_precision="no", device="cpu", output_dir=str(out),
                      output_name="tiny", max_sequence_length=64, sample_width=64, sample_height=64,
                      eval=EvalConfig(prompts={"K": "keichan"}, seeds=[1, 2], steps=1))
    assert len([p for c, p, _, present in plan_samples(cfg) if not present]) == 2 * 3 - 2
    calls = []
    assert len(render(cfg, progress=lambda d, t: calls.append(d)).pngs) == 6 and calls == [1, 2, 3, 4]
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize("section, message", [
    ("", "no eval: section"),
    ("eval:\n  seeds: [1]\n", "eval.prompts is empty: name at least one prompt"),
])
def test_nothing_to_render_is_refused_naming_the_config(tmp_path, section, message):
    path = tmp_path / "train.yaml"
    path.write_text(f"model_path: m\noutput_dir: out\n{section}")
    with pytest.raises(TrainError) as exc:
        render(load_config(path))
    assert str(exc.value).startswith(f"{path.resolve()}: ") and message in str(exc.value)


def test_an_epoch_without_a_saved_lora_is_refused_listing_the_saved_ones(loras, tiny_anima, tmp_path):
    with pytest.raises(TrainError, match=r"no saved LoRA for epoch 5, 7 \(saved epochs: 1, 2, 3\)"):
        render(eval_config(tiny_anima, loras), [2, 5, 7])
    with pytest.raises(TrainError, match="no saved LoRA for epoch 4"):  # the spec's own epochs
        render(eval_config(tiny_anima, loras, epochs=[4]))
    with pytest.raises(TrainError, match=r"no saved LoRA .*train first"):
        render(eval_config(tiny_anima, tmp_path / "empty"))


def test_a_lora_file_not_made_for_this_model_is_one_error_naming_it(tiny_anima, tmp_path):
    from diffusers import CosmosTransformer3DModel
    from safetensors.torch import save_file

    from trainer import shim
    from trainer.lora import LoraSwap

    shim.install()
    swap = LoraSwap(CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer"))
    block = "diffusion_model.blocks.{}.self_attn.q_proj.lora_{}.weight"
    cases = {
        "sdxl": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)},
                 "no Anima LoRA weights"),
        "deeper": ({block.format(7, "A"): torch.zeros(4, 32), block.format(7, "B"): torch.zeros(32, 4)},
                   "LoRA keys that fit no module: ['transformer_blocks.7.attn1.to_q.lora_A.weight'"),
        "wider": ({block.format(0, "A"): torch.zeros(4, 48), block.format(0, "B"): torch.zeros(48, 4)},
                  "does not fit this model: size mismatch for transformer_blocks.0.attn1.to_q.lora_A"),
    }
    for name, (state, message) in cases.items():
        save_file(state, str(tmp_path / f"{name}.safetensors"))
        with pytest.raises(TrainError) as exc:
            swap.load(tmp_path / f"{name}.safetensors")
        assert str(exc.value).startswith(f"{tmp_path / name}.safetensors: ") and message in str(exc.value)
        assert "\n" not in str(exc.value)


def test_capcheck_eval_names_a_broken_epoch_file_in_one_line(tiny_anima, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny_epoch001.safetensors").write_bytes(b"not a safetensors file")
    config = tmp_path / "train.yaml"
    config.write_text(f"model_path: {tiny_anima}\nmixed_precision: 'no'\ndevice: cpu\noutput_dir: {out}\n"
                      "output_name: tiny\nmax_sequence_length: 64\nsample_width: 64\nsample_height: 64\n"
                      "eval:\n  prompts: {K: keichan}\n  seeds: [1]\n  steps: 1\n  must_show: [blonde hair]\n")
    run = subprocess.run([sys.executable, "-m", "verifier.cli.main", "eval", "--config", str(config), "--model", "m",
                          "--base-url", "http://127.0.0.1:9/v1"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OPENAI_API_KEY": "sk-test"})
    assert run.returncode == 2, run.stderr
    *notes, last = run.stderr.strip().splitlines()
    assert last.startswith(f"error: {out / 'tiny_epoch001.safetensors'}: not a readable .safetensors file (")
    assert "Traceback" not in run.stderr and all(n.startswith("policy: ") for n in notes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without a GPU")
def test_device_auto_without_a_gpu_says_what_to_set(tiny_anima, loras, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tiny_epoch001.safetensors").write_bytes(lora_path(loras, "tiny", 1).read_bytes())
    cfg = eval_config(tiny_anima, out).model_copy(update={"device": "auto"})
    with pytest.raises(TrainError, match=r"no CUDA GPU to render the eval samples on \(device: cpu renders them"):
        render(cfg)
    assert not (out / "eval" / "samples").exists()  # nothing half-made


def test_a_swap_takes_each_files_own_alpha_and_rank(tiny_anima, tmp_path):
    """Files of one run share rank and alpha, but a folder may mix runs: each swap must still equal a fresh load."""
    from diffusers import CosmosTransformer3DModel

    from trainer import shim
    from trainer.lora import LoraSwap, add_lora, load_comfy_lora, save_lora

    shim.install()

    def saved(name: str, rank: int, alpha: float, seed: int):
        model = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in add_lora(model, rank, alpha):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        return save_lora(tmp_path / f"{name}.safetensors", model, rank, alpha, {}, torch.float32)

    def fresh(path, rank: int, alpha: float):
        model = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
        add_lora(model, rank, alpha)
        load_comfy_lora(model, path)
        return model

    torch.manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 16, 1, 8, 8), timestep=torch.tensor([0.6]),
                  encoder_hidden_states=torch.randn(1, 16, 24), padding_mask=torch.zeros(1, 1, 64, 64),
                  return_dict=False)
    files = [("a2", 4, 2.0), ("a4", 4, 4.0), ("r8", 8, 3.0), ("a2again", 4, 2.0)]
    swapped = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    swap = LoraSwap(swapped)
    for seed, (name, rank, alpha) in enumerate(files):
        path = saved(name, rank, alpha, seed)
        swap.load(path)
        with torch.no_grad():
            assert torch.equal(swapped(**inputs)[0], fresh(path, rank, alpha)(**inputs)[0]), name
    swap.scale(0.5)  # strength: half of alpha / rank
    assert dict(swapped.named_modules())["transformer_blocks.0.attn1.to_q"].scaling["default"] == 0.5 * 2.0 / 4


def eval_yaml(tiny_anima, out, path, **spec) -> None:
    ev = dict(prompts={"K": "keichan, 1girl, solo", "KT": "keichan, 1girl, solo, blonde hair, upper body"},
              negative="ahoge, worst quality", seeds=[1, 2], strengths=[0.5, 1.0], steps=2, **spec)
    path.write_text(yaml.safe_dump(dict(model_path=str(tiny_anima), mixed_precision="no", device="cpu",
                                        output_dir=str(out), output_name="tiny", max_sequence_length=64,
                                        sample_width=64, sample_height=64, sample_cfg_scale=3.0, eval=ev)))


def test_two_processes_render_a_share_each_and_the_same_images(rendered, tiny_anima, loras, tmp_path):
    """`capcheck eval --render-only --processes 2`: real ranks (gloo), contiguous shares in epoch order; a sample
    depends only on its seed, so the images are the ones one process drew."""
    _, paths, _ = rendered
    out = tmp_path / "out"
    out.mkdir()
    for epoch in (1, 2, 3):
        (out / f"tiny_epoch{epoch:03d}.safetensors").write_bytes(lora_path(loras, "tiny", epoch).read_bytes())
    config = tmp_path / "train.yaml"
    eval_yaml(tiny_anima, out, config)
    run = subprocess.run([sys.executable, "-m", "verifier.cli", "eval", "--config", str(config), "--render-only",
                          "--processes", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    folder = out / "eval" / "samples"
    assert run.stdout.splitlines() == [f"capcheck eval --render-only: rendered 28 of 28 samples on 2 processes "
                                       f"(14 + 14), 0 there already: {folder}"]
    assert run.stderr == ""
    worst = max(int(np.abs(pixels(folder / p.name).astype(int) - pixels(p)).max()) for p in paths)
    print(f"\n2 processes vs 1: 28 samples, largest pixel difference {worst} (of 255)")
    assert worst <= 2  # float reduction order (one thread per rank) at most; a wrong seed or LoRA differs by far more
    assert all(json.loads((folder / p.with_suffix(".json").name).read_text())["seed"] ==
               json.loads(p.with_suffix(".json").read_text())["seed"] for p in paths)
    again = subprocess.run([sys.executable, "-m", "verifier.cli", "eval", "--config", str(config), "--render-only",
                            "--processes", "2"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "rendered 0 of 28 samples on 2 processes (0 + 0), 28 there already" in again.stdout


def test_render_only_and_processes_need_a_config(tmp_path):
    for flag in (["--render-only"], ["--processes", "2"]):
        run = subprocess.run([sys.executable, "-m", "verifier.cli", "eval", "--samples", str(tmp_path), *flag],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and run.stderr.strip().splitlines() == [
            f"error: {flag[0]} goes with --config TRAIN.yaml (images from --samples are rendered already)"]
