"""Generated samples as ComfyUI, A1111/Forge and capcheck write them (built here from the documented formats).

- ComfyUI: the PNG tEXt chunk `prompt` holds the API-format graph,
  `{node_id: {"class_type", "inputs"}}`, a link being `[node_id, output]`;
  the positive text sits in a primitive node linked into CLIPTextEncode's
  `text`, the LoRA loaders chain between the checkpoint loader and the
  sampler's `model` (ComfyUI also writes a `workflow` chunk; unused here).
- A1111 / Forge: the tEXt chunk `parameters`, prompt lines, then
  `Negative prompt: …`, then `Steps: …, Seed: N, …`; LoRAs as `<lora:NAME:W>`.
- capcheck: `<stem>.json` beside the PNG (the renderer's sidecar).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo


def picture(path: Path, key: int) -> Image.Image:
    """A distinct picture per key (random blocks): the demo model tells them apart."""
    rng = random.Random(key)
    cells = Image.new("L", (8, 12))
    cells.putdata([rng.choice((30, 225)) for _ in range(96)])
    path.parent.mkdir(parents=True, exist_ok=True)
    return cells.convert("RGB").resize((128, 192), Image.Resampling.NEAREST)


def comfy_graph(prompt: str, negative: str, seed: int, loras: list[tuple[str, float]]) -> dict:
    nodes: dict[str, dict] = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "anima.safetensors"}}}
    model, clip = ["4", 0], ["4", 1]
    for i, (name, weight) in enumerate(loras):
        nid = str(10 + i)
        nodes[nid] = {"class_type": "LoraLoader", "inputs": {"model": model, "clip": clip, "lora_name": name,
                                                            "strength_model": weight, "strength_clip": weight}}
        model, clip = [nid, 0], [nid, 1]
    nodes["20"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": prompt}}
    nodes["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": ["20", 0], "clip": clip}}
    nodes["7"] = {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": clip}}
    nodes["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}}
    nodes["3"] = {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 20, "cfg": 4.0, "sampler_name": "euler",
                                                       "scheduler": "normal", "denoise": 1.0, "model": model,
                                                       "positive": ["6", 0], "negative": ["7", 0],
                                                       "latent_image": ["5", 0]}}
    nodes["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
    nodes["9"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    return nodes


def write_comfyui(path: Path, key: int, prompt: str, negative: str, seed: int,
                  loras: list[tuple[str, float]]) -> Path:
    info = PngInfo()
    info.add_text("prompt", json.dumps(comfy_graph(prompt, negative, seed, loras)))
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    picture(path, key).save(path, pnginfo=info)
    return path


def write_a1111(path: Path, key: int, prompt: str, negative: str, seed: int, loras: list[tuple[str, float]]) -> Path:
    terms = "".join(f" <lora:{name}:{weight}>" for name, weight in loras)
    info = PngInfo()
    info.add_text("parameters", f"{prompt}{terms}\nNegative prompt: {negative}\nSteps: 20, Sampler: Euler a, "
                                f"CFG scale: 7, Seed: {seed}, Size: 832x1216, Model hash: 0123abcd, Model: anima")
    picture(path, key).save(path, pnginfo=info)
    return path


def write_a1111_exif(path: Path, key: int, prompt: str, negative: str, seed: int,
                     loras: list[tuple[str, float]]) -> Path:
    """A1111 / Forge's JPEG or WebP: the same text in the EXIF UserComment (piexif's UNICODE prefix, UTF-16BE)."""
    terms = "".join(f" <lora:{name}:{weight}>" for name, weight in loras)
    text = f"{prompt}{terms}\nNegative prompt: {negative}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    picture(path, key).save(path, exif=exif)
    return path


def write_capcheck(path: Path, key: int, prompt: str, negative: str, seed: int, lora: str | None, epoch: int,
                   fmt: str = "K", strength: float = 1.0) -> Path:
    picture(path, key).save(path)
    path.with_suffix(".json").write_text(json.dumps({
        "capcheck_sample": 1, "prompt": prompt, "negative": negative, "format": fmt, "seed": seed, "steps": 20,
        "cfg": 4.0, "width": 128, "height": 192, "lora": lora, "strength": strength if lora else 0.0,
        "epoch": epoch}), encoding="utf-8")
    return path


def write_plain(path: Path, key: int) -> Path:
    picture(path, key).save(path)
    return path
