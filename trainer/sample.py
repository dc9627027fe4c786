"""One sample image per prompt with a fixed seed: flow-matching Euler with CFG.

The same sigma schedule as diffusers' Anima pipeline (linspace 1 -> 1/N)
with the training shift applied, so a sample shows what the LoRA does at
the setting it was trained for.
"""

from __future__ import annotations

import itertools

from trainer.encode import decode_latents
from trainer.objective import shift


def sample(transformer, vae, context, negative, *, width: int, height: int, steps: int, cfg: float, seed: int,
           timestep_shift: float, device, dtype):
    """PIL image for one prompt's context (1, L, D)."""
    import numpy as np
    import torch
    from PIL import Image

    generator = torch.Generator("cpu").manual_seed(seed)
    channels = transformer.config.in_channels
    x = torch.randn((1, channels, 1, height // 8, width // 8), generator=generator).to(device, torch.float32)
    sigmas = [*shift(torch.linspace(1.0, 1.0 / steps, steps), timestep_shift).tolist(), 0.0]
    padding = torch.zeros(1, 1, height, width, device=device, dtype=dtype)
    was_training = transformer.training
    transformer.eval()
    with torch.no_grad():
        for sigma, following in itertools.pairwise(sigmas):
            t = torch.full((1,), sigma, device=device, dtype=dtype)
            cond = transformer(hidden_states=x.to(dtype), timestep=t, encoder_hidden_states=context.to(dtype),
                               padding_mask=padding, return_dict=False)[0].float()
            if cfg != 1.0:
                uncond = transformer(hidden_states=x.to(dtype), timestep=t, encoder_hidden_states=negative.to(dtype),
                                     padding_mask=padding, return_dict=False)[0].float()
                cond = uncond + cfg * (cond - uncond)
            x = x + (following - sigma) * cond
    transformer.train(was_training)
    pixels = decode_latents(vae, x)[0].float().clamp(-1, 1)
    array = ((pixels.permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
    return Image.fromarray(array)
