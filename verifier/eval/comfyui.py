"""ComfyUI samples: the API-format graph in the PNG's `prompt` text chunk.

The graph is `{node_id: {"class_type": ..., "inputs": {...}}}`, a link
being `[node_id, output_index]`. From the sampler node (KSampler,
KSamplerAdvanced, SamplerCustom, or SamplerCustomAdvanced with its noise
and guider nodes) we read the seed and follow `positive` / `negative` to
the text encoder's `text` (which may itself be a link to a primitive or
string node); from its `model` input we walk back through the model chain
and collect the LoRA loaders on it (LoraLoader, LoraLoaderModelOnly, …),
so a loader left unconnected does not count. Which of several LoRAs is the
character's is `character_lora`'s rule.
"""

from __future__ import annotations

import json
from pathlib import Path

from verifier.errors import SampleError
from verifier.eval.sample import COMFYUI, Sample, character_lora

CHUNK = "prompt"
SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_VALUE_KEYS = ("text", "string", "value", "seed", "noise_seed", "int", "String", "Text")
_DEPTH = 32  # a graph deeper than this is a loop


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int) and isinstance(
        value[1], int)


class _Graph:
    def __init__(self, path: Path, nodes: dict):
        self.path, self.nodes = path, nodes

    def node(self, link: list) -> dict:
        node = self.nodes.get(str(link[0]))
        if not isinstance(node, dict):
            raise SampleError(self.path, f"ComfyUI graph: a link points to node {link[0]}, which is not in the graph")
        return node

    def inputs(self, node: dict) -> dict:
        inputs = node.get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    def value(self, value: object, depth: int = 0) -> object:
        """A literal input, or the literal at the end of a link to a primitive / string node."""
        if not _is_link(value):
            return value
        if depth > _DEPTH:
            raise SampleError(self.path, "ComfyUI graph: the links loop")
        inputs = self.inputs(self.node(value))  # type: ignore[arg-type]
        for key in _VALUE_KEYS:
            if key in inputs:
                return self.value(inputs[key], depth + 1)
        return None

    def text(self, value: object, depth: int = 0) -> str:
        """The prompt text conditioning comes from: a text encoder's `text`, through combine / set-area nodes."""
        if not _is_link(value):
            return value if isinstance(value, str) else ""
        if depth > _DEPTH:
            raise SampleError(self.path, "ComfyUI graph: the links loop")
        inputs = self.inputs(self.node(value))  # type: ignore[arg-type]
        if "text" in inputs:
            found = self.value(inputs["text"])
            return found if isinstance(found, str) else ""
        texts = [self.text(v, depth + 1) for k, v in sorted(inputs.items()) if _is_link(v) and k != "clip"]
        return ", ".join(t for t in texts if t)

    def loras(self, model: object) -> list[tuple[str, float]]:
        """The LoRA loaders on the model chain that feeds the sampler, nearest first."""
        out: list[tuple[str, float]] = []
        for _ in range(_DEPTH):
            if not _is_link(model):
                break
            node = self.node(model)  # type: ignore[arg-type]
            inputs = self.inputs(node)
            if "lora_name" in inputs:
                name = self.value(inputs["lora_name"])
                strength = self.value(inputs.get("strength_model", 1.0))
                if isinstance(name, str) and name:
                    out.append((name, float(strength) if isinstance(strength, int | float) else 1.0))
            model = inputs.get("model")
        return out


def _sampler_fields(graph: _Graph, node: dict) -> tuple[object, object, object, object]:
    """(seed, positive, negative, model) of a sampler node; the advanced one keeps them in its noise and guider."""
    inputs = graph.inputs(node)
    if node.get("class_type") == "SamplerCustomAdvanced":
        noise = graph.inputs(graph.node(inputs["noise"])) if _is_link(inputs.get("noise")) else {}
        guider = graph.inputs(graph.node(inputs["guider"])) if _is_link(inputs.get("guider")) else {}
        positive = guider.get("positive", guider.get("conditioning"))
        return noise.get("noise_seed"), positive, guider.get("negative"), guider.get("model")
    return inputs.get("seed", inputs.get("noise_seed")), inputs.get("positive"), inputs.get("negative"), \
        inputs.get("model")


def from_graph(path: Path, text: str) -> Sample:
    """The sample a ComfyUI API-format graph describes (the PNG's `prompt` chunk)."""
    try:
        nodes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SampleError(path, f"ComfyUI 'prompt' chunk is not valid JSON ({exc.msg})") from None
    if not isinstance(nodes, dict):
        raise SampleError(path, "ComfyUI 'prompt' chunk is not a node graph")
    graph = _Graph(path, nodes)
    samplers = sorted((k for k, n in nodes.items() if isinstance(n, dict) and n.get("class_type") in SAMPLERS),
                      key=lambda k: (len(k), k))
    if not samplers:
        raise SampleError(path, f"ComfyUI graph has no sampler node ({', '.join(SAMPLERS)})")
    read = [_sampler_fields(graph, nodes[k]) for k in samplers]
    positives = {graph.text(r[1]) for r in read}
    if len(positives) > 1:
        raise SampleError(path, f"ComfyUI graph has {len(samplers)} samplers with different prompts; cannot tell "
                                "which made this image")
    seed_v, positive, negative, model = read[0]  # a hires pass re-samples the same prompt: the first one drew it
    prompt = graph.text(positive).strip()
    if not prompt:
        raise SampleError(path, "ComfyUI graph: no positive prompt text reaches the sampler")
    seed = graph.value(seed_v)
    lora, strength, epoch = character_lora(path, graph.loras(model))
    return Sample(path, COMFYUI, prompt, graph.text(negative).strip(), seed if isinstance(seed, int) else None,
                  lora, strength, epoch)
