"""The demo model is a test double, but a wrong one would make every verify test lie."""

import io
import json

from PIL import Image

from verifier.core.images import prepare
from verifier.demo.model import DemoModel

from conftest import EXAMPLES

TRUTH = EXAMPLES / "keichan" / "truth.json"
DATASET = EXAMPLES / "keichan" / "dataset"


def test_identifies_every_example_image_however_it_is_sent(keichan, tmp_path):
    model = DemoModel.load(TRUTH, DATASET, keichan)
    for known in model.known:
        for size, fmt in ((1024, "jpeg"), (256, "jpeg"), (700, "png")):
            assert model.identify(prepare(DATASET / known.key, size, fmt).data).key == known.key
    index = tmp_path / "index.json"
    model.save_index(index)
    again = DemoModel.load_index(index, keichan)
    assert [k.key for k in again.known] == [k.key for k in model.known]


def test_unknown_image_is_not_guessed(keichan):
    model = DemoModel.load(TRUTH, DATASET, keichan)
    buf = io.BytesIO()
    Image.effect_mandelbrot((256, 384), (-2, -1.5, 1, 1.5), 40).convert("RGB").save(buf, "PNG")
    assert model.identify(buf.getvalue()) is None
    answer = model.observe(None, ["framing"])
    assert answer["framing"] == {"value": "cannot determine", "borderline": False}


def test_answers_from_the_truth(keichan):
    model = DemoModel.load(TRUTH, DATASET, keichan)
    truth = json.loads(TRUTH.read_text())
    key = "02_clothed_pose/available/020105.png"  # from behind: no face
    known = next(k for k in model.known if k.key == key)
    assert model.observe(known, ["framing", "expression"])["expression"]["value"] == "cannot determine"
    assert truth[key]["expression"] is None
