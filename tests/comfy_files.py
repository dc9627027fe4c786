"""The tiny Anima written as the files users download (built here, nothing downloaded).

- the DiT as one ComfyUI file: original Cosmos-Predict2 names under a prefix
  (`net.`, `model.diffusion_model.`, `diffusion_model.` or none), the LLM adapter under
  `llm_adapter.`, optionally with the training buffers (`accum_*`, `pos_embedder.*`);
- the text encoder folder as the articles downloaded it: `model.safetensors`
  (Qwen3ForCausalLM names, `model.` prefix), `tokenizer.json` and `vocab.json` only;
The VAE stays a diffusers folder: a single VAE file carries no config, and
the loader assumes the full-size Qwen-Image VAE for one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

# diffusers -> original Cosmos 2 names (the inverse of diffusers' single-file conversion).
TO_COSMOS = (("transformer_blocks", "blocks"), ("attn1", "self_attn"), ("attn2", "cross_attn"),
             ("to_out.0", "output_proj"), ("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"),
             ("norm_q", "q_norm"), ("norm_k", "k_norm"), ("ff.net.0.proj", "mlp.layer1"), ("ff.net.2", "mlp.layer2"),
             ("norm1.linear_", "adaln_modulation_self_attn."), ("norm2.linear_", "adaln_modulation_cross_attn."),
             ("norm3.linear_", "adaln_modulation_mlp."), ("time_embed.t_embedder", "t_embedder.1"),
             ("time_embed.norm", "t_embedding_norm"), ("patch_embed.proj", "x_embedder.proj.1"),
             ("norm_out.linear_", "final_layer.adaln_modulation."), ("proj_out", "final_layer.linear"))
# What the original training checkpoints also carry (diffusers' conversion drops them).
BUFFERS = {"accum_video_sample_counter": torch.tensor(7), "accum_image_sample_counter": torch.tensor(9),
           "accum_iteration": torch.tensor(11), "accum_train_in_hours": torch.tensor(1.5),
           "pos_embedder.seq": torch.arange(16.0), "pos_embedder.dim_spatial_range": torch.arange(8.0),
           "pos_embedder.dim_temporal_range": torch.arange(4.0)}


def single_file_dit(tiny_anima: Path, dest: Path, prefix: str = "net.", buffers: bool = False) -> Path:
    from diffusers import AnimaTextConditioner, CosmosTransformer3DModel

    transformer = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    conditioner = AnimaTextConditioner.from_pretrained(tiny_anima / "text_conditioner")
    state = {}
    for key, value in transformer.state_dict().items():
        for new, old in TO_COSMOS:
            key = key.replace(new, old)
        state[f"{prefix}{key}"] = value.contiguous()
    state.update({f"{prefix}llm_adapter.{k}": v.contiguous() for k, v in conditioner.state_dict().items()})
    if buffers:
        state.update({f"{prefix}{k}": v for k, v in BUFFERS.items()})
    save_file(state, str(dest))
    return dest


def article_text_encoder(tiny_anima: Path, dest: Path) -> Path:
    """weights + tokenizer.json + vocab.json: no config.json, no tokenizer_config.json."""
    from transformers import Qwen3Model

    dest.mkdir(parents=True, exist_ok=True)
    model = Qwen3Model.from_pretrained(tiny_anima / "text_encoder")
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(dest / "model.safetensors"))
    tokenizer = json.loads((tiny_anima / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    (dest / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    (dest / "vocab.json").write_text(json.dumps(tokenizer["model"]["vocab"]), encoding="utf-8")
    return dest


def article_models(tiny_anima: Path, root: Path) -> dict[str, str]:
    """The four config paths of an article-style setup, under `root` (relative to a config there)."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    single_file_dit(tiny_anima, root / "models" / "anima-tiny.safetensors", "net.", buffers=True)
    article_text_encoder(tiny_anima, root / "models" / "text_encoders")
    return {"transformer_path": "models/anima-tiny.safetensors", "vae_path": str(tiny_anima / "vae"),
            "text_encoder_path": "models/text_encoders", "t5_tokenizer_path": str(tiny_anima / "t5_tokenizer")}
