"""What a LoRA file says about itself, in its safetensors metadata.

Two kinds of keys, all values strings (safetensors metadata is str -> str):

- capcheck's own: the resolved config, step, epoch, rank, alpha, and what the
  caller adds (dataset hash, caption policy, verification summary);
- the kohya-style `ss_*` keys that the LoRA info panels of A1111/Forge,
  ComfyUI's managers and Civitai read (network module, dim, alpha, base
  model, resolution, image count, epochs, steps, learning rate, tag
  frequency, start time, ...).

A LoRA is a file people publish, so no absolute local path goes in: the
config's paths are reduced to their file or folder names.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from captions.caption import TagLine, parse
from trainer.config import TrainConfig
from trainer.data import Sample

# The config keys that hold paths on the trainer's machine.
PATH_KEYS = ("model_path", "transformer_path", "vae_path", "text_encoder_path", "t5_tokenizer_path", "data_dir",
             "cache_dir", "output_dir", "resume_lora")
# kohya sd-scripts' name for its Anima LoRA module, which the info panels know.
NETWORK_MODULE = "networks.lora_anima"


def shareable_config(config: TrainConfig) -> dict:
    """The resolved config with every path reduced to its last part (a file or folder name)."""
    resolved = config.resolved()
    for key in PATH_KEYS:
        if resolved.get(key):
            resolved[key] = Path(resolved[key]).name
    return resolved


def tag_frequency(samples: list[Sample]) -> dict[str, int]:
    """How many captions carry each tag (the natural-language lines are not tags)."""
    counts: Counter[str] = Counter()
    for sample in samples:
        tags = {tag for line in parse(sample.caption).lines if isinstance(line, TagLine) for tag in line.items if tag}
        counts.update(tags)
    return dict(counts.most_common())


def base_model_name(config: TrainConfig) -> str:
    return Path(config.model_path or config.transformer_path or "").name


def lora_metadata(config: TrainConfig, samples: list[Sample], dataset: Path, *, step: int, epoch: int,
                  total_steps: int, started_at: float, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every metadata key of one saved LoRA; `extra` (dataset hash, policy, verification) last."""
    alpha = f"{config.alpha:g}"
    name = Path(dataset).name
    meta = {
        "format": "comfyui-anima-lora",
        "capcheck_config": json.dumps(shareable_config(config), ensure_ascii=False),
        "capcheck_step": str(step), "capcheck_epoch": str(epoch),
        "lora_rank": str(config.lora_rank), "lora_alpha": alpha,
        "ss_network_module": NETWORK_MODULE,
        "ss_network_dim": str(config.lora_rank),
        "ss_network_alpha": alpha,
        "ss_output_name": config.output_name,
        "ss_base_model_version": "anima",
        "ss_sd_model_name": base_model_name(config),
        "ss_resolution": f"({config.resolution}, {config.resolution})",
        "ss_num_train_images": str(len(samples) * config.repeats),  # kohya counts repeats in
        "ss_num_epochs": str(config.epochs),
        "ss_epoch": str(epoch),
        "ss_steps": str(step),
        "ss_max_train_steps": str(total_steps),
        "ss_learning_rate": f"{config.learning_rate:g}",
        "ss_batch_size_per_device": str(config.batch_size),
        "ss_gradient_accumulation_steps": str(config.grad_accum),
        "ss_mixed_precision": config.mixed_precision,
        "ss_optimizer": "torch.optim.AdamW",
        "ss_max_grad_norm": f"{config.max_grad_norm:g}",
        "ss_seed": str(config.seed),
        "ss_keep_tokens": str(config.keep_tokens),
        "ss_shuffle_caption": str(config.shuffle_caption),
        "ss_flip_aug": str(config.flip_augment),
        "ss_dataset_dirs": json.dumps({name: {"n_repeats": config.repeats, "img_count": len(samples)}},
                                      ensure_ascii=False),
        "ss_tag_frequency": json.dumps({name: tag_frequency(samples)}, ensure_ascii=False),
        "ss_training_started_at": f"{started_at:.3f}",
        "ss_training_finished_at": f"{time.time():.3f}",
    }
    return {**meta, **(extra or {})}
