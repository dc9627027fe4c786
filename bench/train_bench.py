"""Anima LoRA training throughput on a full-size, randomly initialised 2B DiT.

    python bench/train_bench.py                 # on a CUDA GPU: 2B config, bf16, rank 32
    python bench/train_bench.py --tiny --device cpu --steps 3   # smoke test of this script

For the 1024x1024 and 832x1216 buckets, batch 1 and 4, with and without
gradient checkpointing: it/s, images/s, peak memory, achieved TFLOP/s and
model FLOPs utilisation. Latents and text conditioning are random tensors of
the real shapes: in training they come from the cache, so the DiT is the
work. Model FLOPs per step = 2 x forward (the frozen weights get no
gradients, so backward is one more forward's worth: the activation
gradients; LoRA's own are negligible); recomputation by checkpointing is
not counted, as MFU conventionally does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 6000 Ada": 364e12}
TEXT_TOKENS = 512


def forward_flops(cfg: dict, batch: int, height: int, width: int) -> float:
    """Matmul FLOPs of one DiT forward pass (adaLN and norms are noise)."""
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    tokens = (height // 16) * (width // 16)  # VAE /8, patch 2x2
    text = cfg["text_embed_dim"]
    per_block = (2 * tokens * (4 * h * h + 2 * h * h + 2 * cfg["mlp_ratio"] * h * h)  # self-attn, cross q/out, mlp
                 + 2 * TEXT_TOKENS * 2 * h * text  # cross-attn k, v over the text
                 + 4 * tokens * tokens * h  # self-attention scores and values
                 + 4 * tokens * TEXT_TOKENS * h)  # cross-attention scores and values
    return batch * cfg["num_layers"] * per_block


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def run_case(model, params, cfg, device, dtype, batch, width, height, checkpointing, steps, warmup):
    import torch

    from trainer.objective import flow_loss, noisy, sample_t

    if checkpointing:
        model.enable_gradient_checkpointing()
    else:
        model.disable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    x0 = torch.randn(batch, 16, 1, height // 8, width // 8, device=device)
    ctx = torch.randn(batch, TEXT_TOKENS, cfg["text_embed_dim"], device=device, dtype=dtype)
    padding = torch.zeros(1, 1, height, width, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        noise = torch.randn_like(x0)
        t = sample_t(batch, 3.0, device=device)
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            pred = model(hidden_states=noisy(x0, noise, t).to(dtype), timestep=t, encoder_hidden_states=ctx,
                         padding_mask=padding, return_dict=False)[0]
        flow_loss(pred, x0, noise).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak


def main() -> None:
    import torch
    from diffusers import CosmosTransformer3DModel

    from trainer import shim
    from trainer.anima import TINY_TRANSFORMER, TRANSFORMER_2B
    from trainer.lora import add_lora

    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="the tiny test config (a smoke test of this script)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rank", type=int, default=32)
    args = ap.parse_args()
    shim.install()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = TINY_TRANSFORMER if args.tiny else TRANSFORMER_2B
    sizes = [(128, 128), (64, 128)] if args.tiny else [(1024, 1024), (832, 1216)]
    torch.manual_seed(0)
    with torch.device(device):
        model = CosmosTransformer3DModel(**cfg)
    model.to(dtype=dtype)
    params = add_lora(model, args.rank, float(args.rank))
    model.train()
    count = sum(p.numel() for p in model.parameters())
    peak = peak_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"train bench: {name}, torch {torch.__version__}, {'tiny' if args.tiny else '2B'} DiT "
          f"({count / 1e9:.2f} B params, random), LoRA rank {args.rank} ({sum(p.numel() for p in params) / 1e6:.1f} M),"
          f" {dtype}, {args.steps} timed steps after {args.warmup}")
    print(f"{'bucket':>10} {'batch':>5} {'ckpt':>5} {'it/s':>7} {'img/s':>7} {'peak GiB':>8} {'TFLOP/s':>8} {'MFU':>6}")
    for width, height in sizes:
        for batch in (1, 4):
            for checkpointing in (False, True):
                label = f"{width}x{height}"
                try:
                    seconds, memory = run_case(model, params, cfg, device, dtype, batch, width, height, checkpointing,
                                               args.steps, args.warmup)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    print(f"{label:>10} {batch:>5} {checkpointing!s:>5}   out of memory")
                    continue
                flops = 2 * forward_flops(cfg, batch, height, width) / seconds
                mfu = f"{flops / peak:>6.1%}" if peak else f"{'-':>6}"
                mem = f"{memory:>8.1f}" if memory is not None else f"{'-':>8}"
                print(f"{label:>10} {batch:>5} {checkpointing!s:>5} {1 / seconds:>7.3f} {batch / seconds:>7.2f} "
                      f"{mem} {flops / 1e12:>8.1f} {mfu}", flush=True)


if __name__ == "__main__":
    main()
