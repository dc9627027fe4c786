import io

import pytest
from PIL import Image

from verifier.core.images import fit, prepare, sha256_file
from verifier.errors import VerifierError


def _decode(prepared):
    return Image.open(io.BytesIO(prepared.data))


def test_resize_keeps_whole_picture_and_long_side(tmp_path):
    path = tmp_path / "tall.png"
    Image.new("RGB", (832, 1216), "white").save(path)
    p = prepare(path, max_side=1024)
    assert p.mime == "image/jpeg" and p.size == (701, 1024)
    assert _decode(p).size == (701, 1024)  # scaled, aspect kept (832/1216 ≈ 701/1024), nothing cropped
    small = prepare(path, max_side=2048)
    assert small.size == (832, 1216)  # never scaled up


def test_fit_never_crops_or_upscales():
    assert fit((4000, 1000), 1000) == (1000, 250)
    assert fit((10, 20), 1000) == (10, 20)
    assert fit((3, 3000), 100) == (1, 100)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 20, 100))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(path, exif=exif)
    shown = _decode(prepare(path, fmt="png"))
    assert shown.size == (100, 200)  # upright as a viewer sees it
    assert shown.getpixel((50, 5))[0] > 200 and shown.getpixel((50, 5))[1] < 60  # the stripe is now on top


def test_transparency_is_flattened_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (10, 10, 30, 30))
    image.save(path)
    shown = _decode(prepare(path, fmt="png"))
    assert shown.mode == "RGB"
    assert shown.getpixel((2, 2)) == (255, 255, 255)  # transparent -> white, not black
    assert shown.getpixel((20, 20)) == (0, 0, 255)
    palette = tmp_path / "palette.png"
    image.convert("P").save(palette, transparency=0)
    assert _decode(prepare(palette, fmt="png")).getpixel((2, 2)) == (255, 255, 255)


def test_same_file_same_settings_same_bytes(tmp_path):
    path = tmp_path / "a.png"
    Image.effect_mandelbrot((600, 900), (-2, -1.5, 1, 1.5), 50).convert("RGB").save(path)
    assert prepare(path, 512).data == prepare(path, 512).data
    assert prepare(path, 512).data != prepare(path, 256).data
    assert prepare(path, 512, "png").mime == "image/png"


def test_bad_image_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(VerifierError) as exc:
        prepare(path)
    assert str(exc.value).startswith(f"{path}: cannot read image")
    with pytest.raises(VerifierError, match="format"):
        prepare(path, fmt="gif")


def test_sha256_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
