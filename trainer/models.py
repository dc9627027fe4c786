"""Loading an Anima: a diffusers-format folder, or the ComfyUI files the articles used.

- `model_path`: a folder with transformer/, text_conditioner/, text_encoder/,
  tokenizer/, t5_tokenizer/, vae/ (diffusers layout).
- `transformer_path`: a ComfyUI single-file DiT (keys under `net.` or
  `diffusion_model.`, the LLM adapter under `llm_adapter.`), split into the
  transformer (diffusers' own `convert_cosmos_transformer_checkpoint_to_diffusers`)
  and the text conditioner (its keys need no renaming: diffusers' Anima LoRA
  conversion maps `llm_adapter.` to `text_conditioner.` one to one). Configs are
  read from the tensor shapes. Plus `vae_path` (a diffusers folder, or the
  Qwen-Image VAE file, whose Wan-2.1 key layout diffusers' `convert_wan_vae_to_diffusers`
  converts), `text_encoder_path` (a Qwen3 folder, with or without config.json)
  and `t5_tokenizer_path`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from trainer.anima import conditioner_config, qwen3_config, transformer_config
from trainer.config import TrainConfig
from trainer.errors import TrainError

DIT_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "net.")


@dataclass
class Anima:
    transformer: object
    text_conditioner: object
    text_encoder: object
    tokenizer: object
    t5_tokenizer: object
    vae: object
    identity: str  # fingerprint of the files, for cache keys


def fingerprint(*paths: Path | None) -> str:
    """Path, size and mtime of every file involved: cheap, and changes when a file does."""
    parts = []
    for path in paths:
        if path is None:
            continue
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
        parts += [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _need(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        raise TrainError(path, f"{what} not found")
    return path


def read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise TrainError(path, f"not a readable .safetensors file ({exc})") from None


def strip_prefix(key: str) -> str:
    """A single-file key without its `net.` / `model.diffusion_model.` / `diffusion_model.` prefix (or none)."""
    for prefix in DIT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def split_single_file(state: dict) -> tuple[dict, dict]:
    """A ComfyUI Anima file -> (transformer state in diffusers names, LLM adapter state).
    diffusers' conversion drops the training buffers (`accum_*`, `pos_embedder.*`) when present."""
    from diffusers.loaders.single_file_utils import convert_cosmos_transformer_checkpoint_to_diffusers

    stripped = {strip_prefix(key): value for key, value in state.items()}
    adapter = {k.removeprefix("llm_adapter."): v for k, v in stripped.items() if k.startswith("llm_adapter.")}
    dit = {k: v for k, v in stripped.items() if not k.startswith("llm_adapter.")}
    return convert_cosmos_transformer_checkpoint_to_diffusers(dit), adapter


def _build(cls, config: dict, state: dict, device, dtype, where: Path):
    import torch

    with torch.device(device):  # random init where it is cheap (the GPU), then the weights
        model = cls(**config)
    # diffusers' own `to(dtype=)` logs "There are modules in ... that should be kept in float32: []"
    # on every call, even when the list is empty: cast with torch's `to`, and keep in fp32 what the
    # class asks for, as `from_pretrained(torch_dtype=)` does.
    torch.nn.Module.to(model, dtype=dtype)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if keep and any(k in name.split(".") for k in keep):
            torch.nn.Module.to(module, dtype=torch.float32)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes that differ: name the first one, in one line
        first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise TrainError(where, f"weights do not fit {cls.__name__}: {first}") from None
    if missing or unexpected:
        raise TrainError(where, f"weights do not fit {cls.__name__}: missing {sorted(missing)[:3]}, "
                                f"unexpected {sorted(unexpected)[:3]}")
    return model


def load_single_file_dit(path: Path, device, dtype):
    from diffusers import AnimaTextConditioner, CosmosTransformer3DModel

    dit, adapter = split_single_file(read_safetensors(path))
    if "transformer_blocks.0.attn1.to_q.weight" not in dit:
        raise TrainError(path, "no Cosmos DiT blocks in this file (expected net./diffusion_model.blocks.0...)")
    if not adapter:
        raise TrainError(path, "no llm_adapter.* keys: this is a Cosmos DiT without Anima's LLM adapter")
    transformer = _build(CosmosTransformer3DModel, transformer_config(dit), dit, device, dtype, path)
    conditioner = _build(AnimaTextConditioner, conditioner_config(adapter), adapter, device, dtype, path)
    return transformer, conditioner


def load_conditioner(config: TrainConfig, device, dtype):
    """The LLM adapter alone: from model_path/text_conditioner, or only the `llm_adapter.*`
    tensors of the single file (a few MB of a 4 GB file; for preflight)."""
    from diffusers import AnimaTextConditioner
    from safetensors import safe_open

    if config.model_path:
        folder = config.path(config.model_path) / "text_conditioner"
        return AnimaTextConditioner.from_pretrained(folder, torch_dtype=dtype).to(device)
    path = _need(config.path(config.transformer_path), "transformer_path")
    adapter = {}
    with safe_open(str(path), framework="pt") as fh:
        for key in list(fh.keys()):  # safe_open has no __iter__
            if strip_prefix(key).startswith("llm_adapter."):
                adapter[strip_prefix(key).removeprefix("llm_adapter.")] = fh.get_tensor(key)
    if not adapter:
        raise TrainError(path, "no llm_adapter.* keys: this is a Cosmos DiT without Anima's LLM adapter")
    return _build(AnimaTextConditioner, conditioner_config(adapter), adapter, device, dtype, path)


def load_vae(path: Path, device, dtype):
    from diffusers import AutoencoderKLQwenImage

    if path.is_dir():
        return AutoencoderKLQwenImage.from_pretrained(path, torch_dtype=dtype).to(device)
    state = read_safetensors(path)
    if "decoder.conv_in.weight" not in state:  # the original Wan-2.1 layout (qwen_image_vae.safetensors)
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

        state = convert_wan_vae_to_diffusers(state)
    return _build(AutoencoderKLQwenImage, {}, state, device, dtype, path)


def quiet() -> None:
    """diffusers' and transformers' per-file "Loading weights" bars would break up our own display."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_text_encoder(path: Path, device, dtype):
    from transformers import Qwen3Config, Qwen3Model

    quiet()

    if path.is_dir() and (path / "config.json").exists():
        return Qwen3Model.from_pretrained(path, dtype=dtype).to(device)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    if not files:
        raise TrainError(path, "no config.json and no .safetensors weights for the Qwen3 text encoder")
    state = {}
    for f in files:  # Qwen3ForCausalLM weights: the base model under model., and an lm_head we do not need
        weights = read_safetensors(f)
        state.update({k.removeprefix("model."): v for k, v in weights.items() if not k.startswith("lm_head")})
    if "embed_tokens.weight" not in state or "layers.0.self_attn.q_norm.weight" not in state:
        raise TrainError(path, "no Qwen3 weights here (expected model.embed_tokens / model.layers.N)")

    def qwen3_model(**config):
        return Qwen3Model(Qwen3Config(**config))

    qwen3_model.__name__ = "Qwen3Model"
    return _build(qwen3_model, qwen3_config(state), state, device, dtype, path)


QWEN_PAD = "<|endoftext|>"  # Qwen's padding token (its tokenizer_config.json names it)


def load_tokenizer(path: Path):
    """The Qwen tokenizer. From tokenizer.json + vocab.json alone (the articles' download, no
    tokenizer_config.json) transformers loads one with no padding token, and the first padded
    batch would fail: give it Qwen's."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = path if path.is_dir() else path.parent
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError):
        if not (folder / "tokenizer.json").exists():
            raise TrainError(folder, "no tokenizer here (tokenizer.json, or vocab.json + merges.txt)") from None
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    if tokenizer.pad_token is None:
        if tokenizer.convert_tokens_to_ids(QWEN_PAD) in (None, tokenizer.unk_token_id):
            raise TrainError(folder, f"the tokenizer has no padding token and no {QWEN_PAD}: not Qwen3's tokenizer")
        tokenizer.pad_token = QWEN_PAD
        tokenizer.eos_token = tokenizer.eos_token or QWEN_PAD
    return tokenizer


def load_t5_tokenizer(path: Path):
    from transformers import T5TokenizerFast

    try:
        return T5TokenizerFast.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise TrainError(path, f"no T5 tokenizer here (spiece.model or tokenizer.json): {exc}") from None


def load_anima(config: TrainConfig, device, dtype) -> Anima:
    """Every part of the model, frozen; the caller adds the LoRA."""
    from diffusers import AnimaTextConditioner, CosmosTransformer3DModel

    quiet()

    if config.model_path:
        root = _need(config.path(config.model_path), "model_path")
        for sub in ("transformer", "text_conditioner", "text_encoder", "tokenizer", "t5_tokenizer", "vae"):
            _need(root / sub, f"model_path/{sub}")
        transformer = CosmosTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=dtype).to(device)
        conditioner = AnimaTextConditioner.from_pretrained(root / "text_conditioner", torch_dtype=dtype).to(device)
        parts = Anima(transformer, conditioner, load_text_encoder(root / "text_encoder", device, dtype),
                      load_tokenizer(root / "tokenizer"), load_t5_tokenizer(root / "t5_tokenizer"),
                      load_vae(root / "vae", device, dtype), fingerprint(root))
    else:
        dit = _need(config.path(config.transformer_path), "transformer_path")
        vae = _need(config.path(config.vae_path), "vae_path")
        te = _need(config.path(config.text_encoder_path), "text_encoder_path")
        t5 = _need(config.path(config.t5_tokenizer_path), "t5_tokenizer_path")
        transformer, conditioner = load_single_file_dit(dit, device, dtype)
        parts = Anima(transformer, conditioner, load_text_encoder(te, device, dtype), load_tokenizer(te),
                      load_t5_tokenizer(t5), load_vae(vae, device, dtype), fingerprint(dit, vae, te, t5))
    for module in (parts.transformer, parts.text_conditioner, parts.text_encoder, parts.vae):
        module.requires_grad_(False)
        module.eval()
    return parts


def describe(parts: Anima) -> dict:
    cfg = parts.transformer.config
    return {"blocks": cfg.num_layers, "hidden": cfg.num_attention_heads * cfg.attention_head_dim,
            "params": sum(p.numel() for p in parts.transformer.parameters()), "identity": parts.identity,
            "text_encoder": json.dumps({"hidden": parts.text_encoder.config.hidden_size})}
