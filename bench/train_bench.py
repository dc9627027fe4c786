"""Anima LoRA training throughput: the trainer's own step on a full-size, randomly initialised 2B DiT.

    python bench/train_bench.py                               # on a CUDA GPU: 2B config, bf16, rank 32
    python bench/train_bench.py --tiny --device cpu           # smoke test of this script (CI)
    python bench/train_bench.py --flops                       # FLOPs of the 2B step, counted anywhere

It times `trainer.step.Stepper`, the function the training loop calls
(forward, rectified-flow loss, backward, gradient clipping, AdamW), not a
copy of it, for the 1024x1024 and 832x1216 buckets, batch 1 and 4,
gradient checkpointing off / auto / all, torch.compile off / on. Latents and
text conditioning are random tensors of the real shapes: in training they
come from the cache, so the DiT is the work.

FLOPs are counted, not estimated: `torch.utils.flop_counter.FlopCounterMode`
on one step without checkpointing (a LoRA step is not 2x a forward:
attention's backward costs about twice its forward, and the frozen weights
get no weight gradients). Checkpointing's recomputation is not counted, as
model-FLOPs utilisation (MFU) conventionally does not. MFU is against the
card's dense bf16 peak, read from `torch.cuda.get_device_name`.
`--flops` counts them on the meta device (shapes only, no weights, no GPU)
and prints what 40% MFU means in images/s on an H100.
The last column is images/s against gradient checkpointing on every block
without compile (the trainer's old default), measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Dense bf16 tensor-core peaks (FLOP/s), by a piece of the device name; the first match wins.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("RTX 6000 Ada", 364e12), ("RTX 4090", 165e12))
TEXT_TOKENS = 512


def peak_flops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16 if k in name), None)


def step_flops(stepper, batch) -> int:
    """FLOPs of one optimizer step, counted by torch on the step itself."""
    counter = FlopCounterMode(display=False)
    with counter:
        stepper([batch])
    return counter.get_total_flops()


def count_only(rank: int) -> None:
    """The 2B step's FLOPs per image on the meta device, and the images/s that 40% MFU means."""
    import torch
    from diffusers import CosmosTransformer3DModel

    from trainer.anima import TRANSFORMER_2B
    from trainer.lora import add_lora
    from trainer.step import Batch, Stepper

    device = torch.device("meta")
    with device:
        model = CosmosTransformer3DModel(**TRANSFORMER_2B)
    params = add_lora(model, rank, float(rank))
    model.train()
    stepper = Stepper(model, params, lr=1e-5, max_grad_norm=1.0, timestep_shift=3.0, mixed_precision="no",
                      device=device)
    peaks = dict(PEAK_BF16)
    print(f"2B DiT, LoRA rank {rank}: FLOPs of one training step, counted by FlopCounterMode on the meta device")
    for width, height in ((1024, 1024), (832, 1216)):
        for batch_size in (1, 4):
            batch = Batch(torch.randn(batch_size, 16, 1, height // 8, width // 8, device=device),
                          torch.randn(batch_size, TEXT_TOKENS, TRANSFORMER_2B["text_embed_dim"], device=device))
            step = step_flops(stepper, batch)
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                stepper.loss(batch)
            per_image = step / batch_size
            print(f"{width}x{height} batch {batch_size}: {per_image / 1e12:.2f} TFLOP per image "
                  f"({step / counter.get_total_flops():.2f}x the forward); 40% MFU = "
                  + ", ".join(f"{0.4 * peaks[key] / per_image:.2f} images/s on an {name}"
                              for name, key in (("H100 SXM", "H100"), ("H100 PCIe", "H100 PCIe"))))


def time_steps(stepper, batch, device, steps: int, warmup: int) -> float:
    """Seconds per optimizer step; the loss is read once at the end, as the loop does."""
    import torch

    for _ in range(warmup):
        stepper([batch])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    losses = [stepper([batch]) for _ in range(steps)]
    torch.stack(losses).tolist()  # the one wait, as the loop's every-N-steps read
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps


def main() -> None:
    import torch
    from diffusers import CosmosTransformer3DModel

    from trainer import shim
    from trainer.anima import TINY_TRANSFORMER, TRANSFORMER_2B
    from trainer.lora import add_lora
    from trainer.speed import checkpoint_blocks, choose_checkpointing, compile_blocks
    from trainer.step import Batch, Stepper

    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="the tiny test config (a smoke test of this script)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per case (default 10 on a GPU, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on a GPU, 1 on CPU)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--flops", action="store_true", help="only count the 2B step's FLOPs (meta device, no GPU)")
    ap.add_argument("--compile", choices=("both", "off", "on"), default=None,
                    help="compile cases (default both on a GPU; off on CPU, where inductor builds for minutes)")
    args = ap.parse_args()
    shim.install()
    if args.flops:
        return count_only(args.rank)
    if args.tiny:
        torch.set_num_threads(1)  # the tiny model's matmuls: waking threads costs more than they give
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps, warmup = args.steps or (10 if gpu else 2), args.warmup or (3 if gpu else 1)
    compiles = {"both": (False, True), "off": (False,), "on": (True,)}[args.compile or ("both" if gpu else "off")]
    mixed = "bf16" if gpu else "no"
    cfg = TINY_TRANSFORMER if args.tiny else TRANSFORMER_2B
    sizes = [(128, 128), (64, 128)] if args.tiny else [(1024, 1024), (832, 1216)]
    torch.manual_seed(0)
    with torch.device(device):
        model = CosmosTransformer3DModel(**cfg)
    model.to(dtype=torch.bfloat16 if gpu else torch.float32)
    params = add_lora(model, args.rank, float(args.rank))
    model.train()
    stepper = Stepper(model, params, lr=1e-5, max_grad_norm=1.0, timestep_shift=3.0, mixed_precision=mixed,
                      device=device)
    name = torch.cuda.get_device_name(device) if gpu else "CPU"
    peak = peak_flops(name) if gpu else None
    count = sum(p.numel() for p in model.parameters())
    print(f"train bench: {name}, torch {torch.__version__}, {'tiny' if args.tiny else '2B'} DiT "
          f"({count / 1e9:.2f} B params, random), LoRA rank {args.rank} ({sum(p.numel() for p in params) / 1e6:.1f} M),"
          f" mixed_precision {mixed}, {steps} timed steps after {warmup}; peak "
          + (f"{peak / 1e12:.0f} TFLOP/s bf16" if peak else "unknown (no MFU)"))
    if not gpu and args.compile is None:
        print("compile: off only on CPU (inductor builds C++ for minutes there); --compile on to force")
    print(f"{'bucket':>10} {'batch':>5} {'ckpt':>8} {'compile':>7} {'it/s':>7} {'img/s':>7} {'peak GiB':>8} "
          f"{'TFLOP/s':>8} {'MFU':>6} {'x all':>6}")
    blocks = len(model.transformer_blocks)
    flops: dict[tuple, int] = {}
    baseline: dict[tuple, float] = {}
    chosen: dict[tuple, int] = {}
    for compiled in compiles:
        if compiled:
            compile_blocks(model)
        for width, height in sizes:
            for batch_size in (1, 4):
                x0 = torch.randn(batch_size, 16, 1, height // 8, width // 8, device=device)
                ctx = torch.randn(batch_size, TEXT_TOKENS, cfg["text_embed_dim"], device=device)
                batch, shape = Batch(x0, ctx), (width, height, batch_size)
                # all first, so the other modes have their baseline; auto picks for this shape
                row = f"{width}x{height}"
                for mode in (True, False, "auto"):
                    try:
                        if (shape, mode) not in chosen:  # probed uncompiled; compiled runs reuse the choice
                            probe = partial(stepper.loss, Batch(x0[:1], ctx[:1]))  # one sample
                            chosen[shape, mode] = choose_checkpointing(mode, model, device, probe, batch_size)[0]
                        n = chosen[shape, mode]
                        checkpoint_blocks(model, n)
                        label = {True: "all", False: "off"}.get(mode, f"auto:{n}")
                        if shape not in flops:
                            checkpoint_blocks(model, 0)
                            flops[shape] = step_flops(stepper, batch)
                            checkpoint_blocks(model, n)
                        if gpu:
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats(device)
                        seconds = time_steps(stepper, batch, device, steps, warmup)
                    except torch.cuda.OutOfMemoryError:
                        stepper.optimizer.zero_grad(set_to_none=True)
                        torch.cuda.empty_cache()
                        print(f"{row:>10} {batch_size:>5} {mode!s:>8} {compiled!s:>7}   out of memory", flush=True)
                        continue
                    images = batch_size / seconds
                    if mode is True and not compiled:
                        baseline[shape] = images
                    achieved = flops[shape] / seconds
                    memory = f"{torch.cuda.max_memory_reserved(device) / 2**30:>8.1f}" if gpu else f"{'-':>8}"
                    mfu = f"{achieved / peak:>6.1%}" if peak else f"{'-':>6}"
                    ratio = f"{images / baseline[shape]:>6.2f}" if shape in baseline else f"{'-':>6}"
                    print(f"{row:>10} {batch_size:>5} {label:>8} {compiled!s:>7} {1 / seconds:>7.3f} {images:>7.2f} "
                          f"{memory} {achieved / 1e12:>8.3g} {mfu} {ratio}", flush=True)
    print("step FLOPs (counted, no recomputation): " + ", ".join(
        f"{w}x{h} b{b}: {f / 1e9:.4g} G" for (w, h, b), f in flops.items()) + f"; {blocks} blocks")


if __name__ == "__main__":
    main()
