"""Text and images into what the DiT consumes, and the on-disk cache of both.

Text: Qwen3 hidden states (masked) and T5 token ids go through the frozen
LLM adapter (`AnimaTextConditioner`), as diffusers' Anima pipeline does, to
the DiT's cross-attention context. Images: the Qwen-Image VAE's latent mean,
normalised by its latents_mean / latents_std, shape (B, 16, 1, h, w).

Both are cached under `cache_dir`, keyed by content: the image's sha256,
its bucket and the VAE's files; the exact caption text and the text
models' files. A latent is cached for the flipped image too when flip
augment is on. Text conditioning is cached only when the caption a step
sees never changes (no shuffle, no tag dropout).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from trainer.data import Sample, image_tensor, training_text


def encode_text(parts, texts: list[str], max_length: int, device):
    import torch

    qwen = parts.tokenizer(texts, padding="longest", max_length=max_length, truncation=True, return_tensors="pt")
    ids, mask = qwen.input_ids.to(device), qwen.attention_mask.to(device)
    if ids.shape[-1] == 0:  # an empty prompt (the negative one)
        ids, mask = ids.new_zeros((len(texts), 1)), mask.new_zeros((len(texts), 1))
    with torch.no_grad():
        hidden = parts.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = hidden * mask.to(hidden).unsqueeze(-1)
        t5 = parts.t5_tokenizer(texts, padding="longest", max_length=max_length, truncation=True, return_tensors="pt")
        conditioner = parts.text_conditioner
        return conditioner(source_hidden_states=hidden.to(conditioner.dtype), target_input_ids=t5.input_ids.to(device),
                           target_attention_mask=t5.attention_mask.to(device), source_attention_mask=mask)


def _stats(vae, device, dtype):
    import torch

    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(shape)
    return mean, std


def encode_images(vae, images, device):
    """(B, 3, H, W) in [-1, 1] -> normalised latents (B, 16, 1, H/8, W/8)."""
    import torch

    with torch.no_grad():
        latents = vae.encode(images.unsqueeze(2).to(device, vae.dtype)).latent_dist.mode()
    mean, std = _stats(vae, latents.device, latents.dtype)
    return (latents - mean) / std


def decode_latents(vae, latents):
    """Normalised latents -> (B, 3, H, W) in [-1, 1]."""
    import torch

    mean, std = _stats(vae, latents.device, vae.dtype)
    with torch.no_grad():
        return vae.decode(latents.to(vae.dtype) * std + mean).sample[:, :, 0]


class Cache:
    def __init__(self, folder: Path, identity: str):
        self.folder = Path(folder)
        self.identity = identity
        self.hits = self.misses = 0

    def _path(self, kind: str, *key: object) -> Path:
        digest = hashlib.sha256("\x00".join(map(str, (self.identity, *key))).encode()).hexdigest()
        return self.folder / kind / digest[:2] / f"{digest}.safetensors"

    def _get(self, path: Path, name: str):
        if not path.exists():
            self.misses += 1
            return None
        from safetensors.torch import load_file

        try:
            value = load_file(str(path)).get(name)
        except Exception:  # a torn or foreign file: recompute it
            value = None
        self.hits += value is not None
        self.misses += value is None
        return value

    def _put(self, path: Path, tensors: dict) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(path)

    def latent(self, sample: Sample, flip: bool):
        return self._get(self._path("latents", sample.sha, *sample.bucket, int(flip)), "latent")

    def put_latent(self, sample: Sample, flip: bool, latent) -> None:
        self._put(self._path("latents", sample.sha, *sample.bucket, int(flip)), {"latent": latent})

    def text(self, text: str, max_length: int):
        return self._get(self._path("text", max_length, text), "context")

    def put_text(self, text: str, max_length: int, context) -> None:
        self._put(self._path("text", max_length, text), {"context": context})


def fill_latent_cache(parts, samples: list[Sample], cache: Cache, flip: bool, device) -> int:
    """Encode every image (and its mirror, with flip augment) not cached yet; returns how many were encoded."""
    encoded = 0
    for sample in samples:
        for flipped in ((False, True) if flip else (False,)):
            if cache.latent(sample, flipped) is None:
                latent = encode_images(parts.vae, image_tensor(sample, flipped).unsqueeze(0), device)[0]
                cache.put_latent(sample, flipped, latent)
                encoded += 1
    return encoded


def fill_caches(parts, samples: list[Sample], cache: Cache, config, device, rank) -> tuple[int | None, dict]:
    """Both caches, filled in shards: each process encodes its share (`rank.share`), then all read
    the whole cache. Returns the latents encoded over every process (None: latents not cached) and
    the text conditioning by caption (empty when the caption a step sees changes: shuffle, dropout)."""
    import torch

    c, encoded = config, None
    if c.cache_latents:
        encoded = fill_latent_cache(parts, rank.share(samples), cache, c.flip_augment, device)
        encoded = int(rank.sum(torch.tensor(encoded, device=device)))
        rank.wait()
    contexts: dict[str, object] = {}
    if not c.shuffle_caption and c.tag_dropout == 0:  # the text never changes: encode each caption once
        texts = sorted({training_text(x.caption) for x in samples})
        for text in rank.share(texts):
            ctx = cache.text(text, c.max_sequence_length)
            if ctx is None:
                ctx = encode_text(parts, [text], c.max_sequence_length, device)[0]
                cache.put_text(text, c.max_sequence_length, ctx)
            contexts[text] = ctx.cpu()  # the loader pads and pins them; the step moves them
        rank.wait()
        for text in texts:  # the other processes' shares, from the cache they filled
            if text not in contexts:
                contexts[text] = cache.text(text, c.max_sequence_length).cpu()
    return encoded, contexts
