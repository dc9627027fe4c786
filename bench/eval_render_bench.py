"""Eval rendering: the LoRA swapped in place against a model reloaded per epoch, measured in the same run.

    python bench/eval_render_bench.py                       # tiny random Anima, CPU
    python bench/eval_render_bench.py --epochs 10 --device cuda

Both sides render the same matrix (prompts x seeds per epoch, plus the
baseline) with the trainer's own pieces. In place: `trainer.evalrender.render`,
which loads the base once and swaps each epoch's weights into one adapter.
Reload: for each epoch a fresh `load_anima` + `add_lora` + `load_comfy_lora`
(what a script that loads a LoRA per checkpoint does), the baseline drawn with
the first load. Printed: both wall times and their ratio (sampling, the same on
both sides, is most of it on the tiny model), the per-epoch cost of a swap
against a reload, and whether the two sides drew the same pixels (they must:
the swap is exact).

The tiny model loads in about a second; the 2B DiT, its text encoder and VAE
take far longer (minutes from the first article's network volume), so the
ratio here is a floor for the real model, not its value.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_loras(tiny: Path, out: Path, epochs: int, rank: int = 4) -> None:
    import torch
    from diffusers import CosmosTransformer3DModel

    from trainer.checkpoint import lora_path
    from trainer.lora import add_lora, save_lora

    model = CosmosTransformer3DModel.from_pretrained(tiny / "transformer")
    params = add_lora(model, rank, float(rank))
    for epoch in range(1, epochs + 1):
        generator = torch.Generator().manual_seed(epoch)
        with torch.no_grad():
            for p in params:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
        save_lora(lora_path(out, "bench", epoch), model, rank, float(rank), {})


def reload_per_epoch(cfg, folder: Path) -> tuple[list[float], list[float]]:
    """The baseline: a fresh model per epoch. Returns (load seconds, LoRA-load seconds) per epoch."""
    import numpy as np
    import torch

    from trainer import shim
    from trainer.encode import encode_text
    from trainer.evalrender import cells, chosen_epochs
    from trainer.lora import add_lora, load_comfy_lora
    from trainer.models import load_anima
    from trainer.sample import sample
    from trainer.step import compute_dtype, pick_device

    shim.install()
    device, dtype = pick_device(cfg), compute_dtype(cfg.mixed_precision)
    loads, swaps = [], []
    for epoch, lora in [(0, None), *chosen_epochs(cfg, None).items()]:
        started = time.perf_counter()
        parts = load_anima(cfg, device, dtype)
        loads.append(time.perf_counter() - started)
        if lora is not None:
            started = time.perf_counter()
            add_lora(parts.transformer, cfg.lora_rank, cfg.alpha)
            load_comfy_lora(parts.transformer, lora)
            swaps.append(time.perf_counter() - started)
        ev = cfg.eval
        negative = encode_text(parts, [ev.negative], cfg.max_sequence_length, device)
        for cell in [c for c in cells(cfg, None) if c.epoch == epoch]:
            ctx = encode_text(parts, [ev.prompts[cell.format]], cfg.max_sequence_length, device)
            with torch.autocast(device.type, dtype=dtype, enabled=cfg.mixed_precision != "no"):
                image = sample(parts.transformer, parts.vae, ctx, negative, width=cfg.sample_width,
                               height=cfg.sample_height, steps=ev.steps, cfg=cfg.sample_cfg_scale, seed=cell.seed,
                               timestep_shift=cfg.timestep_shift, device=device, dtype=dtype)
            np.save(folder / f"{cell.stem}.npy", np.asarray(image))
        if epoch == 0:
            loads.pop()  # the in-place side loads once too: count only the reloads
    return loads, swaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from trainer.anima import build_tiny
    from trainer.config import EvalConfig, TrainConfig
    from trainer.evalrender import render
    from trainer.lora import LoraSwap
    from trainer.models import load_anima

    root = Path(tempfile.mkdtemp(prefix="eval_render_bench_"))
    tiny = build_tiny(root / "anima")
    out = root / "out"
    make_loras(tiny, out, args.epochs)
    spec = EvalConfig(prompts={"K": "keichan, 1girl, solo", "KT": "keichan, 1girl, solo, blonde hair, upper body"},
                      seeds=list(range(1, args.seeds + 1)), steps=args.steps)
    cfg = TrainConfig(model_path=str(tiny), mixed_precision="no" if args.device == "cpu" else "bf16",
                      device=args.device, output_dir=str(out), output_name="bench", lora_rank=4,
                      max_sequence_length=64, sample_width=64, sample_height=64, eval=spec)

    # Warm up first (imports, torch's thread pool, the first kernels), so neither side pays for them.
    warm = cfg.model_copy(update={"eval": spec.model_copy(update={"seeds": [1], "epochs": [1]})})
    reload_per_epoch(warm, Path(tempfile.mkdtemp(dir=root)))
    started, cpu = time.perf_counter(), time.process_time()
    pngs = render(cfg).pngs
    in_place, in_place_cpu = time.perf_counter() - started, time.process_time() - cpu
    reloaded = root / "reload"
    reloaded.mkdir()
    started, cpu = time.perf_counter(), time.process_time()
    loads, swaps_fresh = reload_per_epoch(cfg, reloaded)
    reload, reload_cpu = time.perf_counter() - started, time.process_time() - cpu

    parts = load_anima(cfg, torch.device(args.device), torch.float32)
    swap, swaps = LoraSwap(parts.transformer), []
    for path in sorted(out.glob("bench_epoch*.safetensors")):
        started = time.perf_counter()
        swap.load(path)
        swaps.append(time.perf_counter() - started)

    same = sum(np.array_equal(np.asarray(Image.open(p)), np.load(reloaded / f"{p.stem}.npy")) for p in pngs)
    print(f"matrix: 2 prompts x {args.seeds} seeds x ({args.epochs} epochs + baseline) = {len(pngs)} samples, "
          f"{args.steps} steps, 64x64, {args.device}")
    print(f"in place (load once, swap per epoch): {in_place:.2f} s wall, {in_place_cpu:.2f} s CPU")
    print(f"reload per epoch (the baseline):      {reload:.2f} s wall, {reload_cpu:.2f} s CPU")
    print(f"ratio reload / in place: {reload / in_place:.2f} wall, {reload_cpu / in_place_cpu:.2f} CPU")
    swap_ms = statistics.median(swaps) * 1000
    reload_ms = (statistics.median(loads) + statistics.median(swaps_fresh)) * 1000
    print(f"per epoch: one swap {swap_ms:.1f} ms (median of {len(swaps)}) vs one reload {reload_ms:.0f} ms (model "
          f"{statistics.median(loads) * 1000:.0f} + LoRA {statistics.median(swaps_fresh) * 1000:.0f}, median of "
          f"{len(loads)}): ratio {reload_ms / swap_ms:.1f}")
    print(f"same pixels on both sides: {same} of {len(pngs)}")


if __name__ == "__main__":
    main()
