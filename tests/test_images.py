import io

import pytest
from PIL import Image

from captions.pixels import ModeError, as_rgb
from verifier.core import decoders, thumbs
from verifier.core.images import MAX_PIXELS, fit, open_seen, prepare, sha256_file
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


# -- every mode as a person sees it (captions.pixels) ---------------------------------------------------------------

GREY_40000 = round(40000 / 257)  # 156: a 16-bit grey of 40000 as 8 bits


@pytest.mark.parametrize("mode, fill, expected", [
    ("I;16", 40000, (GREY_40000,) * 3),
    ("I;16B", 40000, (GREY_40000,) * 3),
    ("I", 40000, (GREY_40000,) * 3),  # how older Pillow opened 16-bit PNGs
    ("I;16", 65535, (255, 255, 255)),
    ("LA", (0, 0), (255, 255, 255)),  # transparent black: white
    ("LA", (30, 255), (30, 30, 30)),
    ("RGBA", (0, 0, 255, 0), (255, 255, 255)),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # no cyan, full magenta and yellow: red
    ("YCbCr", (76, 85, 255), (254, 0, 0)),  # red, in JPEG's YCbCr
    ("L", 77, (77, 77, 77)),
    ("1", 1, (255, 255, 255)),
])
def test_every_mode_arrives_as_a_person_sees_it(mode, fill, expected):
    shown = as_rgb(Image.new(mode, (4, 4), fill))
    assert shown.mode == "RGB"
    assert all(abs(a - b) <= 1 for a, b in zip(shown.getpixel((1, 1)), expected, strict=True)), shown.getpixel((1, 1))


def test_pa_transparency_on_white():
    pa = Image.new("P", (4, 4), 1).convert("PA")
    pa.putpixel((0, 0), (1, 0))
    assert as_rgb(pa).getpixel((0, 0)) == (255, 255, 255)


def test_pixels_with_no_one_way_to_show_them_are_named(tmp_path):
    with pytest.raises(ModeError, match="32-bit float"):
        as_rgb(Image.new("F", (4, 4), 0.5))
    with pytest.raises(ModeError, match="past 16 bits"):
        as_rgb(Image.new("I", (4, 4), 70000))


def test_a_16_bit_png_is_prepared_grey_not_white(tmp_path):
    path = tmp_path / "grey16.png"
    Image.new("I;16", (64, 32), 40000).save(path)
    assert Image.open(path).mode == "I;16"  # the pitfall: Pillow's convert("RGB") would clip this to 255
    for fmt in ("png", "jpeg"):
        got = _decode(prepare(path, 1024, fmt)).convert("RGB").getpixel((10, 10))
        assert all(abs(c - GREY_40000) <= 2 for c in got), got
    assert thumbs.thumb(tmp_path / "reports", path, "abc") == "thumbs/abc.jpg"
    shown = Image.open(tmp_path / "reports" / "thumbs" / "abc.jpg").convert("L").getpixel((10, 10))
    assert abs(shown - GREY_40000) <= 2


def test_the_trainer_fits_a_16_bit_png_grey_not_white(tmp_path):
    from trainer.data import fit as train_fit

    path = tmp_path / "grey16.png"
    Image.new("I;16", (128, 128), 40000).save(path)
    with Image.open(path) as im:
        fitted = train_fit(im, (64, 64))
    assert fitted.mode == "RGB" and abs(fitted.getpixel((5, 5))[0] - GREY_40000) <= 1


def test_a_cmyk_jpeg_and_an_animation(tmp_path):
    cmyk = tmp_path / "print.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(cmyk, quality=95)
    r, g, b = _decode(prepare(cmyk, fmt="png")).getpixel((5, 5))
    assert r > 230 and g < 30 and b < 30
    webp = tmp_path / "anim.webp"
    Image.new("RGB", (16, 16), "red").save(webp, save_all=True, append_images=[Image.new("RGB", (16, 16), "blue")])
    with pytest.raises(VerifierError, match=r"animated \(2 frames\)"):
        prepare(webp)


def test_past_the_pixel_limit_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (11000, 10000)).save(path)  # 110 MP: past capcheck's 100, under Pillow's own 179
    with pytest.raises(VerifierError, match=r"image is 11000x10000 \(110 megapixels\), over capcheck's limit of 100"):
        prepare(path)
    assert MAX_PIXELS == 100_000_000


# -- speed without losing what the model must judge (issue 19) -------------------------------------------------------


@pytest.mark.parametrize("side", [1024, 768, 512])
def test_a_thin_line_survives_the_resize(tmp_path, side):
    """A one-pixel strap on white keeps at least 80% of the contrast Lanczos gives it, in every row."""
    path = tmp_path / "strap.png"
    image = Image.new("RGB", (832, 1216), "white")
    image.paste((40, 40, 40), (400, 0, 401, 1216))  # a dark strap, one pixel wide
    image.save(path)
    sent = _decode(prepare(path, side, "png"))
    w, h = sent.size
    x = round(400 * w / 832)
    lanczos = image.resize((w, h), Image.Resampling.LANCZOS)

    def contrast(img, y):
        return 255 - min(img.getpixel((xx, y))[0] for xx in range(x - 2, x + 3))

    rows = range(20, h - 20, 13)
    assert all(contrast(sent, y) >= 0.8 * contrast(lanczos, y) for y in rows), [contrast(sent, y) for y in rows]
    assert min(contrast(sent, y) for y in rows) > 80


def test_pillow_decodes_without_pyspng_the_same_picture(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.effect_mandelbrot((600, 900), (-2, -1.5, 1, 1.5), 50).convert("RGB").save(path)
    alpha = tmp_path / "alpha.png"
    Image.new("RGBA", (40, 40), (0, 0, 255, 0)).save(alpha)
    with_fast = [prepare(p, 512, "png", 320) for p in (path, alpha)]
    monkeypatch.setattr(decoders, "pyspng", None)  # as on a machine without the `fast` extra
    assert decoders.png(path.read_bytes(), Image.open(path)) is None
    without = [prepare(p, 512, "png", 320) for p in (path, alpha)]
    assert [p.data for p in with_fast] == [p.data for p in without]  # lossless decoders: the same bytes sent
    assert _decode(without[1]).getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.skipif(not decoders.available(), reason="pyspng (the `fast` extra) not installed")
def test_pyspng_is_used_for_a_plain_png_and_not_for_16_bit(tmp_path):
    plain, deep = tmp_path / "plain.png", tmp_path / "deep.png"
    Image.new("RGB", (8, 8), "red").save(plain)
    Image.new("I;16", (8, 8), 40000).save(deep)
    assert decoders.png(plain.read_bytes(), Image.open(plain)).getpixel((1, 1)) == (255, 0, 0)
    assert decoders.png(deep.read_bytes(), Image.open(deep)) is None  # Pillow's (and captions.pixels') job


def test_a_jpeg_is_decoded_at_reduced_scale_when_the_size_allows(tmp_path):
    path = tmp_path / "big.jpg"
    Image.effect_mandelbrot((3328, 4864), (-2, -1.5, 1, 1.5), 30).convert("RGB").save(path, quality=90)
    assert open_seen(path, 1024).size == (832, 1216)  # 1/4 scale: still above the 1024 sent
    assert open_seen(path).size == (3328, 4864)
    assert prepare(path, 1024).size == (701, 1024)


def test_the_thumbnail_comes_from_the_same_decode(tmp_path):
    path = tmp_path / "a.png"
    Image.effect_mandelbrot((832, 1216), (-2, -1.5, 1, 1.5), 50).convert("RGB").save(path)
    p = prepare(path, 1024, "jpeg", 320)
    thumb = Image.open(io.BytesIO(p.thumb))
    assert thumb.size == (219, 320)
    assert prepare(path, 1024).thumb is None


def test_a_dead_worker_process_leaves_the_rest_to_threads(tmp_path):
    import asyncio
    import os
    import signal

    from verifier.core.preparing import Preparer

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (64, 96), (i * 40, 0, 0)).save(paths[-1])

    async def go():
        preparer = Preparer(images=64, workers=2)
        try:
            assert preparer.processes
            first = await preparer.prepare(paths[0], 1024, "png", tmp_path / "reports", "a")
            for pid in list(preparer._pool._processes):  # as the kernel's OOM killer would
                os.kill(pid, signal.SIGKILL)
            rest = [await preparer.prepare(p, 1024, "png", tmp_path / "reports", p.stem) for p in paths[1:]]
            return first, rest, preparer.processes
        finally:
            preparer.close()

    first, rest, still_processes = asyncio.run(go())
    assert first.size == (64, 96) and [r.size for r in rest] == [(64, 96)] * 2 and not still_processes
    assert (tmp_path / "reports" / "thumbs" / "a.jpg").exists()


def test_a_worker_started_as_the_pool_broke_is_stopped_at_close(tmp_path):
    """CPython 3.11's pool can start a worker while it marks itself broken (a submit racing its manager
    thread) and never terminate it; one that then blocks for ever held the interpreter's exit for ever
    (CI, once). Such a worker, registered in the broken pool's table as that start registers it, is
    killed at close."""
    import asyncio
    import multiprocessing
    import os
    import signal
    import time

    from verifier.core.preparing import Preparer

    path = tmp_path / "0.png"
    Image.new("RGB", (64, 96)).save(path)
    stray = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,), daemon=True)

    async def go():
        preparer = Preparer(images=64, workers=2)
        try:
            await preparer.prepare(path, 1024, "png", tmp_path / "reports", "a")
            for pid in list(preparer._pool._processes):
                os.kill(pid, signal.SIGKILL)
            await preparer.prepare(path, 1024, "png", tmp_path / "reports", "b")  # broken: now in threads
            assert not preparer.processes and len(preparer._broken) == 1
            stray.start()
            preparer._broken[0][stray.pid] = stray  # where the racing start puts its worker
        finally:
            preparer.close()

    try:
        asyncio.run(go())
        stray.join(10)
        assert stray.exitcode == -signal.SIGKILL
    finally:
        if stray.is_alive():
            stray.kill()
