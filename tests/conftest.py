from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from captions import Vocabulary, load_policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TAGS_CSV = ROOT.parent / "shared" / "data" / "danbooru-tags" / "danbooru.csv"


@pytest.fixture(scope="session")
def keichan():
    return load_policy(EXAMPLES / "keichan" / "policy.yaml")


@pytest.fixture(scope="session")
def kanachan():
    return load_policy(EXAMPLES / "kanachan" / "policy.yaml")


@pytest.fixture(scope="session")
def vocab():
    """The real Danbooru vocabulary (140k tags); skip cleanly when absent."""
    if not TAGS_CSV.exists():
        pytest.skip(f"Danbooru tag CSV not found at {TAGS_CSV}")
    return Vocabulary.load(TAGS_CSV)


@pytest.fixture
def example_dataset(tmp_path):
    """A private copy of the bundled Keichan example dataset."""
    dest = tmp_path / "keichan"
    shutil.copytree(EXAMPLES / "keichan" / "dataset", dest)
    return dest


@pytest.fixture(scope="session")
def clothed47_master(tmp_path_factory, keichan):
    """The 47-image article-shaped set, built once: images, sidecars, captions, truth.json."""
    from captions import build_dataset

    import clothed47

    root = tmp_path_factory.mktemp("clothed47") / "data"
    clothed47.make(root)
    report = build_dataset(root, keichan)
    assert report.count("written") == 47
    return root


@pytest.fixture
def clothed47_dataset(tmp_path, clothed47_master):
    """A private copy of the 47-image set (tests write to it)."""
    dest = tmp_path / "clothed 47 データ"  # spaces and non-ASCII, as the article's folder
    shutil.copytree(clothed47_master, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_anima(tmp_path_factory):
    """A tiny randomly initialised Anima in diffusers layout (built here, nothing downloaded)."""
    from trainer.anima import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "anima")


CAPTION = ("masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\n"
           "A close-up portrait of a young girl with a bright smile looking at the viewer. Her long hair intakes "
           "hang down past her shoulders.\nblunt bangs, braid, blue ribbon,\nsmile, {framing},\n"
           "white background, simple background\n")


@pytest.fixture
def tiny_dataset(tmp_path):
    """Four synthetic images with captions (two sizes: two buckets at resolution 256)."""
    from PIL import Image

    root = tmp_path / "data"
    root.mkdir()
    for i, size in enumerate([(256, 256), (256, 256), (192, 320), (192, 320)]):
        Image.effect_mandelbrot(size, (-2 + 0.2 * i, -1.5, 1, 1.5), 20 + i).convert("RGB").save(root / f"{i}.png")
        (root / f"{i}.txt").write_text(CAPTION.format(framing="portrait" if i < 2 else "upper body"))
    return root


def error_lines(stderr: str) -> list[str]:
    """stderr without the line every command prints first (`policy: … (why)`): what a test of an error reads."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("policy: ")]
