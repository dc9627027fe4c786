"""The LoRA: peft on the DiT's 10 Linears per block, saved under ComfyUI's names.

Targets (per block: self-attn q/k/v/out, cross-attn q/k/v/out, mlp 1/2 =
280 for the 28-block 2B) are named exactly, so nothing else matches: never
the LLM adapter, the AdaLN modulation, the embedders or the final layer.
peft starts lora_B at zero, so step 0 is the base model; the scale is
alpha / rank.

Saved keys are ComfyUI's: `diffusion_model.blocks.N.self_attn.q_proj.lora_A.weight`,
`.lora_B.weight` and, only when alpha differs from the rank, `.alpha`: the
inverse of diffusers' `_convert_non_diffusers_anima_lora_to_diffusers` (the
tests use it as the oracle). ComfyUI applies alpha / rank, and 1.0 when a
module has no `.alpha`, as diffusers does; so a file without them (alpha ==
rank, the default) loads with a plain `pipe.load_lora_weights`, which
refuses keys without "lora" in them. With alpha != rank, diffusers needs the
conversion and the alphas as `network_alphas`, as `load_comfy_lora` does.

Precision: peft creates the adapters in the base layer's dtype (bf16 on a
GPU run). They are cast to fp32 (diffusers' `cast_training_params`), so the
weights, their gradients and AdamW's state are fp32: at lr 2e-5 most bf16
updates would round away (a bf16 ulp is 2^-8 of the value).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trainer.anima import BLOCK_TARGETS
from trainer.errors import TrainError

ADAPTER = "default"
_DIFFUSERS_KEY = re.compile(r"^transformer_blocks\.(\d+)\.(.+)\.(lora_A|lora_B)\.weight$")


def target_modules(num_layers: int) -> list[str]:
    return [f"transformer_blocks.{i}.{name}" for i in range(num_layers) for name in BLOCK_TARGETS]


def add_lora(transformer, rank: int, alpha: float) -> list:
    """Attach the LoRA in fp32; returns the trainable parameters (only the LoRA's)."""
    import torch
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    transformer.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_modules(transformer.config.num_layers),
                        init_lora_weights=True)
    transformer.add_adapter(config, adapter_name=ADAPTER)
    params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    cast_training_params(transformer, dtype=torch.float32)
    return [p for n, p in transformer.named_parameters() if "lora_" in n]


def lora_state(transformer) -> dict:
    """The LoRA weights in diffusers names (`transformer_blocks.N.attn1.to_q.lora_A.weight`)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer, adapter_name=ADAPTER)


def to_comfy(state: dict, alpha: float, rank: int, dtype=None) -> dict:
    """diffusers names -> ComfyUI names, plus one `.alpha` per module unless alpha == rank."""
    import torch

    out = {}
    for key, value in state.items():
        m = _DIFFUSERS_KEY.match(key)
        if m is None or m.group(2) not in BLOCK_TARGETS:
            raise TrainError(None, f"unexpected LoRA key {key}")
        block, target, which = m.groups()
        base = f"diffusion_model.blocks.{block}.{BLOCK_TARGETS[target]}"
        out[f"{base}.{which}.weight"] = value.detach().to("cpu", dtype or value.dtype).contiguous()
        if float(alpha) != float(rank):
            out[f"{base}.alpha"] = torch.tensor(float(alpha))
    return out


def from_comfy(comfy: dict) -> tuple[dict, dict]:
    """ComfyUI names -> (diffusers LoRA state under `transformer.`, network alphas), by diffusers' own conversion."""
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_anima_lora_to_diffusers

    converted = _convert_non_diffusers_anima_lora_to_diffusers(dict(comfy))
    alphas = {k: float(v) for k, v in converted.items() if k.endswith(".alpha")}
    weights = {k: v for k, v in converted.items() if not k.endswith(".alpha")}
    return weights, alphas


def save_lora(path: Path, transformer, rank: int, alpha: float, metadata: dict[str, str], dtype=None) -> Path:
    """Atomic: write to a temp name, then rename (a killed run leaves no half file). The mode is the
    usual one (0666 less the umask): safetensors 0.8 writes 0600, which a ComfyUI running as
    another user cannot read."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(to_comfy(lora_state(transformer), alpha, rank, dtype), str(tmp), metadata=metadata)
    os.chmod(tmp, 0o666 & ~_umask())
    tmp.replace(path)
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_comfy_lora(transformer, path: Path) -> None:
    """Set this model's LoRA weights from a ComfyUI-named file (resume_lora)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights, _alphas = from_comfy(load_file(str(path)))
    state = {k.removeprefix("transformer."): v for k, v in weights.items()}
    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise TrainError(path, f"LoRA keys that fit no module: {unexpected[:3]}")


class LoraSwap:
    """One adapter on a loaded DiT whose weights are replaced in place, file by file (the eval matrix).

    Each `load` writes every LoRA tensor of the adapter: the file's, and zeros for a
    module the file does not carry (ComfyUI applies nothing there), so nothing an
    earlier epoch left can leak into the next; tests compare each swap against a
    fresh load. Each module's alpha is read from the file (`.alpha`, or the rank
    when absent, as ComfyUI does), and `scale` sets peft's scaling to
    strength x alpha / rank, ComfyUI's strength_model. Only a file of another rank
    replaces the adapter (its shapes differ); the base model is never reloaded.
    """

    def __init__(self, transformer):
        self.transformer = transformer
        self.rank: int | None = None
        self.strength = 1.0

    def _layers(self):
        from peft.tuners.lora import LoraLayer

        return {name: m for name, m in self.transformer.named_modules() if isinstance(m, LoraLayer)}

    def load(self, path: Path) -> None:
        import torch
        from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

        from trainer.models import read_safetensors

        try:
            weights, alphas = from_comfy(read_safetensors(path))
        except (KeyError, ValueError) as exc:  # diffusers' conversion names a key it cannot place
            raise TrainError(path, f"not an Anima LoRA ({exc})") from None
        state = {k.removeprefix("transformer."): v for k, v in weights.items()}
        ranks = {v.shape[0] for k, v in state.items() if k.endswith("lora_A.weight")}
        if not ranks:
            raise TrainError(path, "no Anima LoRA weights (diffusion_model.blocks.N.….lora_A.weight): not a LoRA "
                                   "for this model")
        if len(ranks) != 1:
            raise TrainError(path, f"expected one LoRA rank for every module, found {sorted(ranks)}")
        rank = ranks.pop()
        if rank != self.rank:
            if self.rank is not None:
                self.transformer.delete_adapters(ADAPTER)
            add_lora(self.transformer, rank, float(rank))  # alphas are set per module below
            self.rank = rank
        self.transformer.enable_adapters()
        current = get_peft_model_state_dict(self.transformer, adapter_name=ADAPTER)
        unexpected = sorted(set(state) - set(current))
        if unexpected:
            raise TrainError(path, f"LoRA keys that fit no module: {unexpected[:3]}")
        full = {k: state[k] if k in state else torch.zeros_like(v) for k, v in current.items()}
        try:
            set_peft_model_state_dict(self.transformer, full, adapter_name=ADAPTER)
        except RuntimeError as exc:  # shapes of another model: name the first one, in one line
            first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
            raise TrainError(path, f"does not fit this model: {first}") from None
        for name, layer in self._layers().items():
            layer.lora_alpha[ADAPTER] = alphas.get(f"transformer.{name}.alpha", float(rank))
        self.scale(self.strength)

    def scale(self, strength: float) -> None:
        self.strength = strength
        for layer in self._layers().values():
            layer.set_scale(ADAPTER, strength)

    def off(self) -> None:
        """The base model alone (the baseline samples)."""
        if self.rank is not None:
            self.transformer.disable_adapters()
