"""A nearest-neighbour resize for diffusers' Cosmos transformer, without torchvision.

Why: `CosmosTransformer3DModel.forward` resizes the padding mask with
`torchvision.transforms.functional.resize(..., NEAREST)` when
`concat_padding_mask=True` (Anima's config), and raises `NameError:
transforms` when torchvision is missing. On a CPU machine torchvision cannot
be installed at all: only CUDA wheels exist, and with a CPU torch they break
`import transformers` and `import diffusers` ("operator torchvision::nms does
not exist"). So where torchvision is absent we give that module the one
function it uses. For a tensor, torchvision's NEAREST resize is
`torch.nn.functional.interpolate(mode="nearest")`, which is what we call.
Where torchvision is installed (a GPU box), nothing is touched.
"""

from __future__ import annotations

import types


def resize(tensor, size, interpolation=None, antialias=None):
    """torchvision.transforms.functional.resize for NEAREST on a (..., H, W) tensor."""
    import torch.nn.functional as F

    if interpolation not in (None, "nearest", InterpolationMode.NEAREST):
        raise ValueError(f"the shim only does nearest-neighbour resizing, not {interpolation}")
    if isinstance(size, int):
        size = [size, size]
    squeeze = tensor.ndim == 3
    batch = tensor.unsqueeze(0) if squeeze else tensor
    dtype = batch.dtype
    out = F.interpolate(batch.float() if not dtype.is_floating_point else batch, size=tuple(size), mode="nearest")
    out = out.to(dtype)
    return out.squeeze(0) if squeeze else out


class InterpolationMode:
    NEAREST = "nearest"


def install() -> bool:
    """Give diffusers' Cosmos transformer module `transforms` if it has none.
    Returns True when the shim was installed."""
    import diffusers.models.transformers.transformer_cosmos as cosmos

    if hasattr(cosmos, "transforms"):
        return False
    cosmos.transforms = types.SimpleNamespace(functional=types.SimpleNamespace(resize=resize),
                                              InterpolationMode=InterpolationMode)
    return True
