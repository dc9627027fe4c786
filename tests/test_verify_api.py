"""verify through the openai SDK against a real loopback HTTP server."""

import asyncio
import json
import shutil
import time
from collections import Counter

import pytest

from verifier.core.store import Store
from verifier.core.verdict import ERROR, FIX, OK, REFUSED
from verifier.core.verify import ASKED, DERIVED, STORED, VerifyOptions, verify_dataset
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults
from verifier.errors import BackendUnavailable

from clothed47 import EXPECTED, EXPECTED_FIX_IMAGES, expected_items


@pytest.fixture
def model(clothed47_dataset, keichan):
    return DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)


def run(root, policy, **options):
    opts = VerifyOptions(**{"model": "demo-vision", "retry_base": 0.02, **options})
    with Store(root) as store:
        return asyncio.run(verify_dataset(root, policy, opts, store))


def items_by_image(result):
    return {r.image: {(f.aspect, f.image, f.caption) for f in r.verdict.fixes} for r in result.results if r.verdict.fixes}


def groups(result):
    return Counter((f.aspect, f.image, f.caption) for r in result.results for f in r.verdict.fixes)


@pytest.mark.parametrize("protocol, style", [("observe", "plain"), ("fixline", "plain"), ("observe", "fenced"),
                                             ("fixline", "chatty")])
def test_47_images_report_exactly_the_planted_fixes(clothed47_dataset, keichan, model, protocol, style):
    with DemoServer(model, Faults(latency=0.05, style=style)) as server:
        result = run(clothed47_dataset, keichan, base_url=server.url, protocol=protocol, concurrency=6)
    assert dict(groups(result)) == EXPECTED
    assert items_by_image(result) == expected_items()
    assert result.count(FIX) == EXPECTED_FIX_IMAGES and result.count(OK) == 47 - EXPECTED_FIX_IMAGES
    assert result.requests == 47 and server.stats.max_in_flight <= 6
    assert all(r.attempts == 1 and r.source == ASKED for r in result.results)
    assert result.tokens()[0] > 0


def test_article_style_view_under_letter_a(clothed47_dataset, keichan, model):
    with DemoServer(model, Faults(view_under_a=True)) as server:
        result = run(clothed47_dataset, keichan, base_url=server.url, protocol="fixline")
    assert any("A=three-quarter" in e for e in _answers(result))  # the server really wrote it under A
    assert dict(groups(result)) == EXPECTED


def _answers(result):
    return [json.loads(r.raw)["choices"][0]["message"]["content"] for r in result.results if r.raw]


def test_second_run_asks_nothing_and_fresh_asks_again(clothed47_dataset, keichan, model):
    with DemoServer(model) as server:
        first = run(clothed47_dataset, keichan, base_url=server.url)
        server.stats.reset()
        second = run(clothed47_dataset, keichan, base_url=server.url)
        assert server.stats.requests == 0 and second.requests == 0
        assert all(r.source == STORED for r in second.results)
        assert [(r.image, r.verdict.status) for r in second.results] == [(r.image, r.verdict.status) for r in first.results]
        third = run(clothed47_dataset, keichan, base_url=server.url, fresh=True)
        assert server.stats.requests == 47 and third.requests == 47
    with Store(clothed47_dataset) as store:
        assert len(store.verdicts()) == 47  # one row per key: --fresh replaced, not duplicated


def test_observe_answer_is_reused_for_an_edited_caption_fixline_is_not(clothed47_dataset, keichan, model):
    with DemoServer(model) as server:
        run(clothed47_dataset, keichan, base_url=server.url)
        caption = clothed47_dataset / "02_clothed_pose/available/020021.txt"
        caption.write_text(caption.read_text().replace("full body,", "cowboy shot,"))
        server.stats.reset()
        again = run(clothed47_dataset, keichan, base_url=server.url)
        assert server.stats.requests == 0  # the image did not change: its observation still stands
        edited = next(r for r in again.results if r.image.endswith("020021.png"))
        assert edited.source == DERIVED
        assert {(f.aspect, f.image, f.caption) for f in edited.verdict.fixes} == {("facing", "right", "left")}
        run(clothed47_dataset, keichan, base_url=server.url, protocol="fixline")
        server.stats.reset()
        caption.write_text(caption.read_text().replace("cowboy shot,", "full body,"))
        run(clothed47_dataset, keichan, base_url=server.url, protocol="fixline")
        assert server.stats.requests == 1  # the caption is part of a fixline question


def test_faults_every_image_one_verdict_refusals_refused_in_flight_bounded(clothed47_dataset, keichan, model):
    folder = "02_clothed_pose/available/"
    script = {
        "020000.png": ["429", "ok"], "020002.png": ["500", "503", "ok"], "020004.png": ["hang", "ok"],
        "020005.png": ["drop", "ok"], "020006.png": ["refuse_stop"], "020007.png": ["refuse_filter"],
        "020008.png": ["refusal_field"], "020009.png": ["safety"], "020010.png": ["fenced"],
        "020011.png": ["chatty"], "020012.png": ["garbage"], "020013.png": ["500"] * 10, "020014.png": ["empty"],
        "020015.png": ["length"],
    }
    faults = Faults(latency=0.05, jitter=0.05, scripted={folder + k: v for k, v in script.items()}, rate=0.15,
                    kinds=("429", "500", "drop"), retry_after=0.5, hang=3.0, seed=7)
    with DemoServer(model, faults) as server:
        result = run(clothed47_dataset, keichan, base_url=server.url, concurrency=8, timeout=1.0, max_attempts=6)
    status = {r.image.removeprefix(folder): r.verdict for r in result.results}
    assert len(result.results) == 47 and len(status) == 47
    for name in ("020006.png", "020007.png", "020008.png", "020009.png", "020014.png"):
        assert status[name].status == REFUSED, (name, status[name])
    assert status["020013.png"].status == ERROR and "gave up after 6 attempts" in status["020013.png"].reason
    assert status["020012.png"].status == ERROR and "unreadable" in status["020012.png"].reason
    assert status["020015.png"].status == ERROR and "token limit" in status["020015.png"].reason
    for name in ("020000.png", "020002.png", "020004.png", "020005.png", "020010.png", "020011.png"):
        assert status[name].status in (OK, FIX), (name, status[name])
    retried = {r.image.removeprefix(folder): r.attempts for r in result.results}
    assert retried["020000.png"] >= 2 and retried["020002.png"] >= 3 and retried["020004.png"] >= 2
    assert server.stats.max_in_flight <= 8 and result.max_in_flight <= 8
    log = [(k, t) for k, f, t in server.stats.log if k == folder + "020000.png"]
    assert log[1][1] - log[0][1] >= 0.5  # Retry-After honoured
    with Store(clothed47_dataset) as store:
        rows = store.verdicts()
    assert len(rows) == 47 and len({r["image"] for r in rows}) == 47
    answered = [r for r in result.results if r.verdict.status in (OK, FIX)]
    assert all(r.raw for r in answered) and all(r.prompt_tokens for r in answered)


def test_errors_are_asked_again_refusals_are_not(clothed47_dataset, keichan, model):
    folder = "02_clothed_pose/available/"
    faults = Faults(scripted={folder + "020001.png": ["500", "500", "ok"], folder + "020002.png": ["refuse_filter"]})
    with DemoServer(model, faults) as server:
        first = run(clothed47_dataset, keichan, base_url=server.url, max_attempts=2)
        assert {r.image: r.verdict.status for r in first.results}[folder + "020001.png"] == ERROR
        server.stats.reset()
        server.faults.scripted = {}
        second = run(clothed47_dataset, keichan, base_url=server.url, max_attempts=2)
        assert server.stats.per_image == {folder + "020001.png": 1}
        assert {r.image: r.verdict.status for r in second.results}[folder + "020001.png"] == FIX


def test_bad_key_stops_the_run(clothed47_dataset, keichan, model):
    faults = Faults(scripted={k: ["401"] * 5 for k in json.loads((clothed47_dataset / "truth.json").read_text())})
    with DemoServer(model, faults) as server, pytest.raises(BackendUnavailable) as exc:
        run(clothed47_dataset, keichan, base_url=server.url, concurrency=2)
    assert "HTTP 401" in str(exc.value) and "OPENAI_API_KEY" in str(exc.value)
    assert server.stats.requests <= 4  # stopped at once, not 47 times


def test_unreachable_server_stops_at_once_with_one_line(clothed47_dataset, keichan):
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable) as exc:
        run(clothed47_dataset, keichan, base_url=f"http://127.0.0.1:{port}/v1", concurrency=6, retry_base=1.0)
    assert time.monotonic() - t0 < 5  # was: 4 attempts per image with backoff, one error line each
    message = str(exc.value)
    assert message.startswith(f"http://127.0.0.1:{port}/v1: cannot connect") and "is the server running?" in message
    assert "\n" not in message
    with Store(clothed47_dataset) as store:
        assert store.verdicts() == []  # no error verdict per image


def free_port():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_key_for_openai_is_a_clear_error(clothed47_dataset, keichan, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendUnavailable, match=r"no API key: set \$OPENAI_API_KEY"):
        run(clothed47_dataset, keichan)


def test_only_and_skipped(clothed47_dataset, keichan, model):
    (clothed47_dataset / "02_clothed_pose/available/020046.txt").unlink()
    shutil.copy(clothed47_dataset / "02_clothed_pose/available/020000.png", clothed47_dataset / "extra.png")
    with DemoServer(model) as server:
        result = run(clothed47_dataset, keichan, base_url=server.url, only=["02_clothed_pose/*/02000?.png"])
        assert [r.image.rsplit("/", 1)[1] for r in result.results] == [f"0200{i:02d}.png" for i in range(10)]
        everything = run(clothed47_dataset, keichan, base_url=server.url)
    assert len(everything.results) == 46
    assert everything.skipped == {"02_clothed_pose/available/020046.png": "no caption", "extra.png": "no caption"}
