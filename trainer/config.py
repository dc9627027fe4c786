"""The training config: YAML, validated by pydantic, in AnimaLoraToolkit's key names.

So the articles' configs run unchanged: `rank` is `lora_rank`,
`sample_prompt` is `sample_prompts`, and the toolkit keys capcheck does not
act on are accepted and named in a note instead of rejected. Any other
unknown key is an error naming the key and the file, because a misspelt
key silently ignored is a setting not applied.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from captions.policy import describe_validation_error
from captions.yamlfile import read_yaml
from trainer.errors import TrainError

FORMAT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

# AnimaLoraToolkit keys accepted for compatibility that capcheck does not use.
IGNORED = {
    "xformers": "attention is PyTorch SDPA",
    "prefer_json": "captions are the dataset's .txt files",
    "resume_state": "use `capcheck train --resume`",
    "sample_sampler_name": "samples use flow-matching Euler",
    "sample_scheduler": "samples use flow-matching Euler",
    "lokr_factor": "only lora_type: lora is supported",
    "monitor": "the monitor data is output_dir/state.json",
}


class EvalConfig(BaseModel):
    """The `eval:` section: which samples to render per saved epoch and what each must show.

    `capcheck eval --spec eval.yaml` reads the same model (prompts may be empty
    there: with --samples the prompts are in the images). None means "not said":
    steps/cfg/size fall back to the config's sample_* settings, must_show /
    must_not_show to the policy's defaults, epochs to every saved LoRA.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: dict[str, str] = Field(default_factory=dict)  # format name (K, KT, N) -> positive prompt
    negative: str = ""
    seeds: list[int] = Field(default_factory=lambda: [42, 100, 200])
    epochs: list[int] | None = None  # None: every saved one; the baseline (epoch 0) is always rendered
    strengths: list[float] = Field(default_factory=lambda: [1.0])  # LoRA scale
    must_show: list[str] | None = None
    must_not_show: list[str] | None = None
    steps: int | None = None
    cfg: float | None = None
    width: int | None = None
    height: int | None = None

    @field_validator("must_show", "must_not_show", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        # "blonde hair, blue eyes" reads as the command line's --must-show does
        return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v

    # Field validators, so an error reads `eval.seeds: the list is empty` with the file in front.
    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: dict[str, str]) -> dict[str, str]:
        for name, text in v.items():
            # the name is part of each sample's file name (ep0020_K_s42_w1.0.png)
            if not FORMAT_NAME.fullmatch(name):
                raise ValueError(f"format name {name!r} must be letters, digits, '-' or '_'")
            if not text.strip():
                raise ValueError(f"{name} is empty")
        return v

    @field_validator("seeds", "strengths", "epochs")
    @classmethod
    def _listed_once(cls, v: list | None) -> list | None:
        if v is not None and not v:
            raise ValueError("the list is empty (give at least one, or leave the key out)")
        twice = sorted({x for x in v or [] if v.count(x) > 1})
        if twice:
            raise ValueError(f"{', '.join(map(str, twice))} listed twice")
        return v

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, v: list[float]) -> list[float]:
        if bad := [s for s in v if s <= 0]:
            raise ValueError(f"{bad[0]} is not above 0 (the baseline, epoch 0, is rendered anyway)")
        return v

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (bad := [e for e in v if e < 1]):
            raise ValueError(f"{bad[0]} is not a saved epoch (epochs count from 1; 0, the baseline, is always "
                             "rendered)")
        return v

    @field_validator("steps", "cfg")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError(f"{v} is not above 0")
        return v

    @field_validator("width", "height")
    @classmethod
    def _size(cls, v: int | None) -> int | None:
        if v is not None and (v < 64 or v % 64):
            raise ValueError(f"{v} is not a multiple of 64")
        return v


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Models: one diffusers-format directory, or the ComfyUI files.
    model_path: str | None = None
    transformer_path: str | None = None  # ComfyUI single-file DiT (net./diffusion_model., llm_adapter.*)
    vae_path: str | None = None  # qwen_image_vae.safetensors, or a diffusers VAE folder
    text_encoder_path: str | None = None  # Qwen3-0.6B folder (or one .safetensors) with its tokenizer
    t5_tokenizer_path: str | None = None

    # Data
    data_dir: str | None = None
    resolution: int = 1024
    repeats: int = 1
    shuffle_caption: bool = False
    keep_tokens: int = 0
    flip_augment: bool = False
    tag_dropout: float = 0.0
    cache_latents: bool = True
    cache_dir: str | None = None  # default: output_dir/cache
    max_sequence_length: int = 512

    # LoRA
    lora_type: Literal["lora", "lokr"] = "lora"
    lora_rank: int = Field(32, validation_alias=AliasChoices("lora_rank", "rank"))
    lora_alpha: float | None = None  # default: the rank (scale 1)
    resume_lora: str | None = None  # start from these LoRA weights (a fresh optimizer)

    # Training
    epochs: int = 1
    max_steps: int = 0  # 0: no limit
    batch_size: int = 1
    grad_accum: int = 1
    learning_rate: float = 1e-4
    # bf16: bf16 base weights + bf16 autocast; fp16: the same in fp16 with a GradScaler; no: fp32.
    # The LoRA, its gradients and AdamW's state are fp32 in every case.
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    # auto: off when the activations fit the free VRAM, else on for only as many blocks as needed.
    grad_checkpoint: Literal["auto"] | bool = "auto"
    compile: bool = False  # torch.compile each DiT block (regional: a new bucket recompiles one block's graph)
    num_workers: int = 0  # DataLoader worker processes (cache reads, image decoding, caption shuffling)
    max_grad_norm: float = 1.0
    timestep_shift: float = Field(3.0, validation_alias=AliasChoices("timestep_shift", "shift"))
    seed: int = 42
    device: Literal["auto", "cuda", "cpu"] = "auto"

    # Output
    output_dir: str = "output"
    output_name: str = "lora"
    save_every: int = 1  # epochs; 0: only the last
    save_every_steps: int = 0
    save_state_every: int | None = None  # steps between resume states; default: every epoch
    save_precision: Literal["bf16", "fp32"] = "bf16"  # the LoRA file's tensors
    log_every: int = 10  # steps between loss reads (each one waits for the GPU) and state.json writes
    # At the end: each image's loss with the LoRA and without, ranked (output_dir/losses.json; trainer.losses).
    image_losses: bool = True

    # Samples
    sample_every: int = 0  # epochs; 0: none
    sample_prompts: list[str] = Field(default_factory=list,
                                      validation_alias=AliasChoices("sample_prompts", "sample_prompt"))
    sample_negative_prompt: str = ""
    sample_seed: int = 42
    sample_steps: int = Field(25, validation_alias=AliasChoices("sample_steps", "sample_infer_steps"))
    sample_cfg_scale: float = 4.0
    sample_width: int = 1024
    sample_height: int = 1024

    # Accepted, not used (see IGNORED)
    xformers: bool | None = None
    prefer_json: bool | None = None
    resume_state: str | None = None
    sample_sampler_name: str | None = None
    sample_scheduler: str | None = None
    lokr_factor: int | None = None
    monitor: bool | None = None

    # Eval: the sample matrix `capcheck eval --config` renders and scores (None: no eval section)
    eval: EvalConfig | None = None

    source: Path | None = Field(default=None, exclude=True)

    @field_validator("sample_prompts", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lora_type == "lokr":
            raise ValueError("lora_type: lokr is not supported: capcheck trains plain LoRA only (lora_type: lora)")
        for name in ("resolution", "sample_width", "sample_height"):
            if getattr(self, name) % 64:
                raise ValueError(f"{name}: {getattr(self, name)} is not a multiple of 64")
        for name in ("repeats", "epochs", "batch_size", "grad_accum", "lora_rank", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_workers < 0:
            raise ValueError("num_workers must be 0 (load in the training process) or more")
        if self.save_state_every is not None and self.save_state_every < 1:
            raise ValueError("save_state_every must be at least 1 (steps), or left out (every epoch)")
        if not 0.0 <= self.tag_dropout < 1.0:
            raise ValueError("tag_dropout must be in [0, 1)")
        if self.sample_steps == 0:  # the toolkit's "0: off" for step-based sampling
            self.sample_steps = 25
        if self.model_path is None and self.transformer_path is None:
            raise ValueError("set model_path (a diffusers folder) or transformer_path (+ vae_path, "
                             "text_encoder_path, t5_tokenizer_path)")
        if self.model_path is None:
            missing = [k for k in ("vae_path", "text_encoder_path", "t5_tokenizer_path") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"with transformer_path, also set {', '.join(missing)}")
        return self

    @property
    def alpha(self) -> float:
        return float(self.lora_alpha if self.lora_alpha is not None else self.lora_rank)

    def ignored(self) -> list[str]:
        """Toolkit keys that were set but that capcheck does not act on."""
        return [f"{k} ({why})" for k, why in IGNORED.items() if getattr(self, k) is not None]

    def path(self, value: str | None) -> Path | None:
        """A path from the config, relative to the config file."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() or self.source is None else (self.source.parent / p)

    def resolved(self) -> dict:
        """Every setting with its value (defaults filled in), for the outputs."""
        return self.model_dump(mode="json", exclude={"source", *IGNORED})


def load_config(path: str | Path, **overrides: object) -> TrainConfig:
    """Read and validate a config; errors name the file and the key."""
    path = Path(path)
    data = read_yaml(path, TrainError, "config") or {}
    if not isinstance(data, dict):
        raise TrainError(path, "expected a mapping of config keys at the top level")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainError(path, describe_validation_error(exc)) from None
    config.source = path.resolve()
    return config


def save_resolved(config: TrainConfig, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{config.output_name}_config.yaml"
    target.write_text(yaml.safe_dump(config.resolved(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target
