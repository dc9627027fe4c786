"""What an Anima is made of: the reference configs, configs read back from
weights, and a tiny random Anima for tests (nothing downloaded).

Anima (CircleStone Labs) is the Cosmos-Predict2 2B text-to-image DiT, a
Qwen3-0.6B text encoder, a 6-layer LLM adapter (diffusers'
`AnimaTextConditioner`) that cross-attends from T5 token ids to the Qwen3
states, and the Qwen-Image VAE.
"""

from __future__ import annotations

import re
from pathlib import Path

# diffusers' Cosmos-2.0-Diffusion-2B-Text2Image transformer config.
TRANSFORMER_2B = dict(in_channels=16, out_channels=16, num_attention_heads=16, attention_head_dim=128, num_layers=28,
                      mlp_ratio=4.0, text_embed_dim=1024, adaln_lora_dim=256, max_size=(128, 240, 240),
                      patch_size=(1, 2, 2), rope_scale=(1.0, 4.0, 4.0), concat_padding_mask=True,
                      extra_pos_embed_type=None)
# Qwen3-0.6B(-Base): what `qwen3_config` cannot read from the weights of a text encoder folder
# without config.json (the articles downloaded only model.safetensors, tokenizer.json and vocab.json).
QWEN3_06B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
# The 10 Linears LoRA trains in each DiT block, diffusers name -> ComfyUI name.
BLOCK_TARGETS = {
    "attn1.to_q": "self_attn.q_proj", "attn1.to_k": "self_attn.k_proj", "attn1.to_v": "self_attn.v_proj",
    "attn1.to_out.0": "self_attn.output_proj",
    "attn2.to_q": "cross_attn.q_proj", "attn2.to_k": "cross_attn.k_proj", "attn2.to_v": "cross_attn.v_proj",
    "attn2.to_out.0": "cross_attn.output_proj",
    "ff.net.0.proj": "mlp.layer1", "ff.net.2": "mlp.layer2",
}

TINY_TRANSFORMER = dict(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                        mlp_ratio=2.0, text_embed_dim=24, adaln_lora_dim=8, max_size=(4, 64, 64), patch_size=(1, 2, 2),
                        rope_scale=(1.0, 4.0, 4.0), concat_padding_mask=True, extra_pos_embed_type=None)
TINY_CONDITIONER = dict(source_dim=32, target_dim=24, model_dim=32, num_layers=1, num_attention_heads=2,
                        target_vocab_size=None, min_sequence_length=16)
TINY_QWEN3 = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, max_position_embeddings=512)
TINY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                temperal_downsample=[False, False, False])


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def transformer_config(state: dict) -> dict:
    """The CosmosTransformer3DModel config that fits a diffusers-named state dict."""
    hidden = state["transformer_blocks.0.attn1.to_q.weight"].shape[0]
    head = state["transformer_blocks.0.attn1.norm_q.weight"].shape[0]
    patch = TRANSFORMER_2B["patch_size"]
    cells = patch[0] * patch[1] * patch[2]
    return {**TRANSFORMER_2B,
            "num_attention_heads": hidden // head, "attention_head_dim": head,
            "num_layers": _count(state, r"transformer_blocks\.(\d+)\."),
            "mlp_ratio": state["transformer_blocks.0.ff.net.0.proj.weight"].shape[0] / hidden,
            "text_embed_dim": state["transformer_blocks.0.attn2.to_k.weight"].shape[1],
            "adaln_lora_dim": state["transformer_blocks.0.norm1.linear_1.weight"].shape[0],
            "in_channels": state["patch_embed.proj.weight"].shape[1] // cells - 1,
            "out_channels": state["proj_out.weight"].shape[0] // cells,
            "extra_pos_embed_type": "learnable" if any(k.startswith("learnable_pos_embed") for k in state) else None}


def qwen3_config(state: dict) -> dict:
    """The Qwen3Config that fits a Qwen3 state dict (names without `model.`): for a text encoder
    folder with weights but no config.json, as the articles downloaded it. What the shapes do
    not say (rope theta, norm eps, context length) is Qwen3-0.6B's."""
    vocab, hidden = state["embed_tokens.weight"].shape
    head = state["layers.0.self_attn.q_norm.weight"].shape[0]
    return {**QWEN3_06B, "vocab_size": vocab, "hidden_size": hidden, "head_dim": head,
            "intermediate_size": state["layers.0.mlp.gate_proj.weight"].shape[0],
            "num_hidden_layers": _count(state, r"layers\.(\d+)\."),
            "num_attention_heads": state["layers.0.self_attn.q_proj.weight"].shape[0] // head,
            "num_key_value_heads": state["layers.0.self_attn.k_proj.weight"].shape[0] // head}


def conditioner_config(state: dict) -> dict:
    """The AnimaTextConditioner config that fits its state dict (the LLM adapter)."""
    vocab, target = state["embed.weight"].shape
    model = state["in_proj.weight"].shape[0] if "in_proj.weight" in state else target
    head = state["blocks.0.cross_attn.q_norm.weight"].shape[0]
    return dict(source_dim=state["blocks.0.cross_attn.k_proj.weight"].shape[1], target_dim=target, model_dim=model,
                num_layers=_count(state, r"blocks\.(\d+)\."), num_attention_heads=model // head,
                mlp_ratio=state["blocks.0.mlp.0.weight"].shape[0] / model, target_vocab_size=vocab,
                use_self_attention="blocks.0.self_attn.q_proj.weight" in state,
                use_layer_norm="blocks.0.norm_cross_attn.bias" in state)


TINY_WORDS = ("masterpiece best quality score_7 safe sensitive explicit 1girl solo keichan a close-up portrait of "
              "young girl with smile bright soft calm neutral expression looking at the viewer her long hair intakes "
              "hang down past shoulders on both sides face below blunt bangs and half-up braid wraps around back "
              "head tied blue ribbon standing front view three-quarter side profile from behind white background "
              "simple full body cowboy shot upper sidelocks updo nude bikini t-shirt dress gym uniform worst low "
              "blurry text watermark . , - _")


def tiny_tokenizers():
    """A Qwen-style byte-level BPE and a T5-style unigram tokenizer, trained here on a few words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast, T5TokenizerFast

    text = [TINY_WORDS] * 8
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(text, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    qwen = Qwen2TokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    uni = Tokenizer(models.Unigram())
    uni.normalizer = normalizers.NFKC()
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    uni.decoder = decoders.Metaspace()
    uni.train_from_iterator(text, trainers.UnigramTrainer(vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"],
                                                          unk_token="<unk>", show_progress=False))
    t5 = T5TokenizerFast(tokenizer_object=uni, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)
    return qwen, t5


def build_tiny(dest: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny Anima in diffusers layout (transformer/, text_conditioner/,
    text_encoder/, tokenizer/, t5_tokenizer/, vae/): 2 DiT blocks, small widths."""
    import torch
    from diffusers import AnimaTextConditioner, AutoencoderKLQwenImage, CosmosTransformer3DModel
    from transformers import Qwen3Config, Qwen3Model

    dest = Path(dest)
    torch.manual_seed(seed)
    qwen_tok, t5_tok = tiny_tokenizers()
    CosmosTransformer3DModel(**TINY_TRANSFORMER).save_pretrained(dest / "transformer")
    AnimaTextConditioner(**{**TINY_CONDITIONER, "target_vocab_size": len(t5_tok)}).save_pretrained(
        dest / "text_conditioner")
    Qwen3Model(Qwen3Config(vocab_size=len(qwen_tok), **TINY_QWEN3)).save_pretrained(dest / "text_encoder")
    AutoencoderKLQwenImage(**TINY_VAE).save_pretrained(dest / "vae")
    qwen_tok.save_pretrained(dest / "tokenizer")
    t5_tok.save_pretrained(dest / "t5_tokenizer")
    return dest
