"""What the loss says about the captions: each image's loss with the final LoRA and with none.

OneTrainer's "generate losses", with a rule to act on. Every image is
scored at fixed timesteps with fixed noise, seeded by the image's sha256
and the run's seed, so the numbers compare across epochs, LoRAs and runs:
once with the LoRA, once with it switched off (the base model). The ratio
with / without says how well the LoRA learnt the image *as captioned*; an
image it cannot fit while it fits the others is often one whose caption
says what the image does not show (or another image's caption).

Worst fits: a ratio above the upper Tukey fence, Q3 + 1.5 IQR of all the
ratios (the boxplot rule: it assumes no distribution, and a dataset where
every image fits alike flags none). Under 4 images there is no fence
(quartiles of three numbers say nothing): the ranking only.

With several processes each scores its share; rank 0 writes `losses.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
from pathlib import Path

from trainer.data import Sample, training_text

TIMESTEPS = (0.2, 0.4, 0.6, 0.8)
FILE = "losses.json"
RULE = "ratio > Q3 + 1.5 IQR of the ratios (Tukey's upper fence); no fence under 4 images"


def image_loss(transformer, x0, context, key: str, device, dtype, autocast: bool) -> float:
    """The mean flow loss of one image over TIMESTEPS, the noise seeded by `key`."""
    import torch

    from trainer.objective import flow_loss, noisy

    x0 = x0.to(device, torch.float32).unsqueeze(0)
    context = context.to(device).unsqueeze(0)
    gen = torch.Generator(device).manual_seed(random.Random(key).getrandbits(63))
    total = 0.0
    padding = torch.zeros(1, 1, x0.shape[-2] * 8, x0.shape[-1] * 8, device=device, dtype=dtype)
    for value in TIMESTEPS:
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.full((1,), value, device=device)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype) if autocast else contextlib.nullcontext():
            prediction = transformer(hidden_states=noisy(x0, noise, t).to(dtype), timestep=t,
                                     encoder_hidden_states=context.to(dtype), padding_mask=padding,
                                     return_dict=False)[0]
        total += float(flow_loss(prediction, x0, noise)[0])
    return total / len(TIMESTEPS)


def score(parts, samples: list[Sample], cache, contexts: dict, config, device, dtype, autocast: bool) -> list[dict]:
    """Per sample: the loss with the LoRA, without it, and their ratio. The inputs come from the
    caches where they are there (`contexts`: the captions encoded once), else freshly encoded."""
    from trainer.data import image_tensor
    from trainer.encode import encode_images, encode_text

    def latent(sample):
        cached = cache.latent(sample, False) if config.cache_latents else None
        return cached if cached is not None else encode_images(parts.vae, image_tensor(sample).unsqueeze(0), device)[0]

    def context(text):
        known = contexts.get(text)
        return known if known is not None else encode_text(parts, [text], config.max_sequence_length, device)[0]

    transformer, out = parts.transformer, []
    was_training = transformer.training
    transformer.eval()
    try:
        for sample in samples:
            x0, ctx, key = latent(sample), context(training_text(sample.caption)), f"{config.seed}:{sample.sha}"
            with_lora = image_loss(transformer, x0, ctx, key, device, dtype, autocast)
            transformer.disable_adapters()
            try:
                base = image_loss(transformer, x0, ctx, key, device, dtype, autocast)
            finally:
                transformer.enable_adapters()
            out.append({"sha": sample.sha, "loss_lora": with_lora, "loss_base": base,
                        "ratio": with_lora / base if base > 0 else float("inf")})
    finally:
        transformer.train(was_training)
    return out


def fence(ratios: list[float]) -> dict | None:
    """Tukey's upper fence of the ratios, with the quartiles it rests on (None under 4 images)."""
    if len(ratios) < 4:
        return None
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"q1": q1, "q3": q3, "iqr": q3 - q1, "fence": q3 + 1.5 * (q3 - q1)}


def report(samples: list[Sample], scores: list[dict], root: Path, lora: str | None) -> dict:
    """losses.json's content: every image (relative to the dataset), worst fit first."""
    by_sha = {s["sha"]: s for s in scores}
    ratios = [s["ratio"] for s in scores]
    limits = fence(ratios)
    images = []
    for sample in samples:
        s = by_sha[sample.sha]
        images.append({"image": sample.image.relative_to(root).as_posix(), "sha256": sample.sha,
                       "loss_lora": round(s["loss_lora"], 6), "loss_base": round(s["loss_base"], 6),
                       "ratio": round(s["ratio"], 6),
                       "worst": bool(limits and s["ratio"] > limits["fence"])})
    images.sort(key=lambda x: -x["ratio"])
    return {"lora": lora, "timesteps": list(TIMESTEPS), "images_scored": len(images), "rule": RULE,
            "quartiles": limits, "worst": sum(x["worst"] for x in images), "images": images}


def write(folder: Path, data: dict) -> Path:
    path = folder / FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path
