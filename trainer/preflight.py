"""preflight: the articles' "smoke test before the 7-minute load", automated.

The first article lost two launches to its stack: `pip install transformers`
pulled a release that needs torch 2.5 (crash at the text encoder), and the
pinned 4.45.2 did not know `qwen3` (crash again, 7 minutes of loading each).
Every check here is cheap and runs before any DiT weight is read: versions,
CUDA and the GPU's compute capability against the torch build, free VRAM
against an estimate, every model file present with the keys it must have
(read from safetensors headers, not loaded), tokenizers, and finally the
text path itself: a padded batch of two captions through the text encoder
and the LLM adapter (only the adapter's tensors are read from the DiT file).
The first failure stops with its fix in one line.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.config import TrainConfig
from trainer.errors import PreflightFailed

# Two captions of different length: one padded batch, as a training batch of two is.
PROBE_CAPTIONS = ("1girl, solo", "masterpiece, best quality, safe, 1girl, solo, a girl with long hair and a smile")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _at_least(found: str | None, want: tuple[int, ...]) -> bool:
    if not found:
        return False
    parts = []
    for piece in found.split("+")[0].split(".")[: len(want)]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= want


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names from the header alone: no weights read."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return list(fh.keys())


def estimate_vram_gib(config: TrainConfig, params: float = 2.0e9, hidden: int = 2048, layers: int = 28) -> float:
    """Rough: bf16 DiT weights, the LoRA with AdamW state, and activations
    (tokens x hidden x layers x batch, times ~6 without checkpointing, ~1.5 with; `auto`
    checkpoints as many blocks as it must, so its floor is the checkpointed one)."""
    weights = params * 2
    lora = layers * 10 * 2 * hidden * config.lora_rank * 4 * 4  # fp32 weights + grads + 2 Adam moments
    tokens = (config.resolution // 16) ** 2
    factor = 6.0 if config.grad_checkpoint is False else 1.5
    activations = tokens * hidden * layers * config.batch_size * 2 * factor * 4
    return (weights + lora + activations) / 2**30 + 1.0  # + CUDA context, VAE, buffers


def checks(config: TrainConfig, processes: int = 1) -> list[tuple[str, Callable[[], Check]]]:
    """The checklist, in order; each item runs only if the ones before it passed. With `processes`
    > 1 (data parallel, one GPU each) the GPU checks cover every GPU the run will use."""
    cpu = config.device == "cpu"
    gpus = range(processes)

    def python() -> Check:
        ok = sys.version_info >= (3, 10)
        return Check("python", ok, platform.python_version(), "use Python 3.10 or newer")

    def torch_check() -> Check:
        found = _version("torch")
        return Check("torch", _at_least(found, (2, 4)), found or "not installed",
                     "pip install torch (2.4 or newer; a CUDA build for a GPU)")

    def transformers_check() -> Check:
        found = _version("transformers")
        try:
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING

            knows = "qwen3" in CONFIG_MAPPING
        except Exception:
            knows = False
        return Check("transformers knows qwen3", knows, found or "not installed",
                     "pip install 'transformers>=4.51' (Qwen3 arrived in 4.51; newer ones may need a newer torch)")

    def diffusers_check() -> Check:
        found = _version("diffusers")
        try:
            import diffusers

            missing = [n for n in ("CosmosTransformer3DModel", "AnimaTextConditioner", "AutoencoderKLQwenImage")
                       if not hasattr(diffusers, n)]
        except Exception as exc:
            missing = [f"import failed: {exc}"]
        return Check("diffusers has the Anima classes", not missing, found or "not installed",
                     "pip install 'diffusers>=0.39'" + (f" (missing {', '.join(missing)})" if missing else ""))

    def peft_check() -> Check:
        found = _version("peft")
        return Check("peft", _at_least(found, (0, 13)), found or "not installed", "pip install 'peft>=0.13'")

    def cuda() -> Check:
        import torch

        if cpu:
            return Check("CUDA", True, "device: cpu (a smoke test, not a real run)")
        if not torch.cuda.is_available():
            return Check("CUDA", False, f"torch {torch.__version__} sees no CUDA GPU",
                         "run on a machine with an NVIDIA GPU and a CUDA build of torch")
        found = torch.cuda.device_count()
        names = ", ".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(found))
        if found < processes:
            return Check("CUDA", False, f"{processes} processes need {processes} GPUs; torch sees {found} ({names})",
                         f"use --processes {found} or fewer, or a machine with more GPUs")
        return Check("CUDA", True, f"{names if processes > 1 else torch.cuda.get_device_name(0)}, "
                                   f"CUDA {torch.version.cuda}")

    def capability() -> Check:
        import torch

        if cpu:
            return Check("compute capability", True, "skipped on CPU")
        built = torch.cuda.get_arch_list()
        for gpu in gpus:
            major, minor = torch.cuda.get_device_capability(gpu)
            arch = f"sm_{major}{minor}"
            ok = arch in built or any(a.startswith("compute_") and int(a[8:]) <= major * 10 + minor for a in built)
            if not ok or gpu == gpus[-1]:
                where = f"GPU {gpu}: " if processes > 1 else ""
                return Check("compute capability", ok, f"{where}{arch}; this torch build has {', '.join(built)}",
                             f"install a torch build with {arch} kernels (Blackwell sm_120 needs a cu128 build)")

    def vram() -> Check:
        import torch

        need = estimate_vram_gib(config)
        if cpu:
            return Check("free VRAM", True, f"skipped on CPU (a 2B run needs about {need:.0f} GiB)")
        for gpu in gpus:  # each process holds the whole model: every GPU needs the estimate
            free, total = (x / 2**30 for x in torch.cuda.mem_get_info(gpu))
            if free < need or gpu == gpus[-1]:
                where = f"GPU {gpu}: " if processes > 1 else ""
                return Check("free VRAM", free >= need, f"{where}{free:.1f} of {total:.1f} GiB free; estimate "
                                                        f"{need:.1f} GiB",
                             "free the GPU, or lower batch_size / resolution, or set grad_checkpoint: auto")

    def files() -> Check:
        found = model_files(config)
        bad = [f"{what}: {why}" for what, why in found if why]
        return Check("model files", not bad, "; ".join(w for w, _ in found) if not bad else "; ".join(bad),
                     "point the config at the right files (see the README's training section)")

    def tokenizers() -> Check:
        from trainer.models import load_t5_tokenizer, load_tokenizer

        _, tok, t5 = _text_paths(config)
        qwen, t5tok = load_tokenizer(tok), load_t5_tokenizer(t5)
        return Check("tokenizers load", True, f"Qwen {len(qwen)} tokens, T5 {len(t5tok)} tokens")

    def text_path() -> Check:
        """Padding is where the articles' tokenizer folder failed, after the 7-minute load:
        tokenize two captions of different length into one padded batch and run the text
        encoder and the LLM adapter on it, as training does."""
        import types

        import torch

        from trainer.encode import encode_text
        from trainer.models import load_conditioner, load_t5_tokenizer, load_text_encoder, load_tokenizer

        te, tok, t5 = _text_paths(config)
        dtype = torch.float32 if cpu else torch.bfloat16
        parts = types.SimpleNamespace(tokenizer=load_tokenizer(tok), t5_tokenizer=load_t5_tokenizer(t5),
                                      text_encoder=load_text_encoder(te, "cpu", dtype),
                                      text_conditioner=load_conditioner(config, "cpu", dtype))
        lengths = [len(parts.tokenizer(text).input_ids) for text in PROBE_CAPTIONS]
        context = encode_text(parts, list(PROBE_CAPTIONS), config.max_sequence_length, "cpu")
        ok = context.shape[0] == 2 and bool(torch.isfinite(context.float()).all())
        layers = parts.text_encoder.config.num_hidden_layers
        return Check("text path", ok, f"Qwen3 ({layers} layers) + LLM adapter: captions of {lengths[0]} and "
                                      f"{lengths[1]} tokens, padded -> context {tuple(context.shape)}",
                     "the text encoder produced non-finite values: check its weights and dtype")

    return [("python", python), ("torch", torch_check), ("transformers", transformers_check),
            ("diffusers", diffusers_check), ("peft", peft_check), ("cuda", cuda), ("capability", capability),
            ("vram", vram), ("files", files), ("tokenizers", tokenizers), ("text_path", text_path)]


def _text_paths(config: TrainConfig) -> tuple[Path, Path, Path]:
    """(Qwen3 weights, Qwen tokenizer, T5 tokenizer): a diffusers folder keeps them apart,
    the ComfyUI layout keeps the tokenizer beside the text encoder."""
    if config.model_path:
        root = config.path(config.model_path)
        return root / "text_encoder", root / "tokenizer", root / "t5_tokenizer"
    te = config.path(config.text_encoder_path)
    return te, te, config.path(config.t5_tokenizer_path)


def model_files(config: TrainConfig) -> list[tuple[str, str]]:
    """(what, problem) for every model file; problem is '' when it is fine."""
    out: list[tuple[str, str]] = []
    if config.model_path:
        root = config.path(config.model_path)
        for sub in ("transformer", "text_conditioner", "text_encoder", "tokenizer", "t5_tokenizer", "vae"):
            out.append((f"{sub}/", "" if (root / sub).is_dir() else f"missing under {root}"))
        return out
    dit = config.path(config.transformer_path)
    if not dit.exists():
        out.append((str(dit), "no such file"))
    else:
        keys = safetensors_keys(dit)
        body = [k for k in keys if re.search(r"(^|\.)blocks\.0\.self_attn\.q_proj\.weight$", k)]
        adapter = [k for k in keys if "llm_adapter." in k]
        why = "" if body and adapter else ("no DiT blocks" if not body else "no llm_adapter.* (not an Anima file)")
        out.append((f"transformer {dit.name} ({len(keys)} tensors)", why))
    vae = config.path(config.vae_path)
    if vae.is_dir():
        out.append((f"vae {vae.name}/", "" if (vae / "config.json").exists() else "no config.json"))
    elif not vae.exists():
        out.append((str(vae), "no such file"))
    else:
        keys = safetensors_keys(vae)
        ok = any(k.startswith(("decoder.conv_in.", "decoder.conv1.")) for k in keys)
        out.append((f"vae {vae.name}", "" if ok else "no decoder weights: not the Qwen-Image VAE"))
    te = config.path(config.text_encoder_path)
    files = [te] if te.is_file() else sorted(te.glob("*.safetensors")) if te.is_dir() else []
    keys = [k for f in files for k in safetensors_keys(f)]
    ok = any(k.endswith("layers.0.self_attn.q_proj.weight") for k in keys)
    out.append((f"text encoder {te.name}", "" if ok else "no Qwen3 weights (model.safetensors) here"))
    t5 = config.path(config.t5_tokenizer_path)
    out.append((f"t5 tokenizer {t5.name}", "" if t5.exists() else "no such folder"))
    return out


def run_preflight(config: TrainConfig, on_check: Callable[[Check], None] | None = None,
                  processes: int = 1) -> list[Check]:
    """Run the checklist; raises PreflightFailed at the first failure."""
    done = []
    for name, check in checks(config, processes):
        try:
            result = check()
        except PreflightFailed:
            raise
        except Exception as exc:  # a check that crashes is a failed check, with what it said
            result = Check(name, False, f"{type(exc).__name__}: {exc}", "see the message above")
        done.append(result)
        if on_check:
            on_check(result)
        if not result.ok:
            raise PreflightFailed(result.name, result.detail, result.fix)
    return done
