"""Every sample in a folder, read from its own metadata; the others named with why.

Per image, in this order: capcheck's sidecar (`<stem>.json` marked
`capcheck_sample`), ComfyUI's `prompt` graph chunk, A1111/Forge's
`parameters` chunk. An image none of them describe, or whose epoch cannot
be determined, is left out and named in one line: never guessed.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from captions.dataset import IMAGE_EXTS
from verifier.core.store import STATE_DIR
from verifier.errors import SampleError
from verifier.eval import a1111, comfyui
from verifier.eval.sample import Sample
from verifier.eval.sidecar import is_sample_sidecar, read_sidecar, sidecar_path

NO_METADATA = ("no generation metadata (no capcheck sidecar, no ComfyUI 'prompt' graph, no A1111 'parameters' "
               "chunk)")


KNOWN = (comfyui.CHUNK, a1111.CHUNK)


def text_chunks(path: Path) -> dict[str, str]:
    """The image's text chunks (PNG tEXt / iTXt / zTXt).

    ComfyUI and A1111 write theirs before the pixels, where opening the file
    finds them; PIL's `.text` also reads chunks after the pixels, but only
    by decoding the whole image (about 30 ms for 832x1216, the bulk of a
    re-run's time), so it is the fallback for a PNG without them up front."""
    try:
        with Image.open(path) as im:
            chunks = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
            if im.format == "PNG" and not any(k in chunks for k in KNOWN):
                chunks.update(getattr(im, "text", None) or {})
            elif im.format in ("JPEG", "WEBP") and a1111.CHUNK not in chunks and (text := a1111.user_comment(im)):
                chunks[a1111.CHUNK] = text
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise SampleError(path, f"cannot read the image: {exc}") from None
    return chunks


def read_sample(path: Path) -> Sample:
    if is_sample_sidecar(sidecar_path(path)):
        return read_sidecar(path)
    chunks = text_chunks(path)
    if comfyui.CHUNK in chunks and chunks[comfyui.CHUNK].lstrip().startswith("{"):
        return comfyui.from_graph(path, chunks[comfyui.CHUNK])
    if a1111.CHUNK in chunks:
        return a1111.from_parameters(path, chunks[a1111.CHUNK])
    raise SampleError(path, NO_METADATA)


def images_in(folder: Path) -> list[Path]:
    """The images under `folder` (recursively), not the state and report folder."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                  and STATE_DIR not in p.relative_to(folder).parts)


def gather(folder: Path, images: list[Path] | None = None) -> tuple[list[Sample], dict[str, str]]:
    """(samples, {image relative to folder: why it was left out})."""
    samples, skipped = [], {}
    for path in images if images is not None else images_in(folder):
        try:
            samples.append(read_sample(path))
        except SampleError as exc:
            skipped[path.relative_to(folder).as_posix()] = exc.message
    return samples, skipped
