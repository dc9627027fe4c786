import json

import pytest

from captions.errors import SidecarError
from captions.sidecar import positive_from_parameters, prompt_from_sidecar, read_sidecar


@pytest.mark.parametrize(
    ("data", "want"),
    [
        ({"prompt": "1girl, solo"}, "1girl, solo"),
        ({"positive": "1girl"}, "1girl"),
        ({"positive_prompt": " 1girl "}, "1girl"),
        ({"prompt": ["1girl", "solo"]}, "1girl, solo"),
        # ComfyUI's node graph under `prompt` is not a prompt: fall through.
        ({"prompt": {"3": {"class_type": "KSampler"}}, "positive": "1girl"}, "1girl"),
        ({"parameters": "1girl, solo,\nsmile\nNegative prompt: bad hands\nSteps: 30, Seed: 1"}, "1girl, solo,\nsmile"),
        ({"parameters": "1girl\nSteps: 30, Sampler: Euler"}, "1girl"),
    ],
)
def test_prompt_keys(data, want):
    assert prompt_from_sidecar(data) == want


def test_a1111_without_negative_or_steps():
    assert positive_from_parameters("just a prompt") == "just a prompt"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"seed": 1}', "no positive prompt"),
        ('{"prompt": "   "}', "no positive prompt"),
    ],
)
def test_bad_sidecars_name_the_file(tmp_path, content, message):
    path = tmp_path / "a.json"
    path.write_text(content)
    with pytest.raises(SidecarError) as info:
        read_sidecar(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_read_sidecar(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"prompt": "1girl, (smile:1.2)"}))
    assert read_sidecar(path) == "1girl, (smile:1.2)"
