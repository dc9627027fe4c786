"""`capcheck review` after `capcheck route --losses`: the worst fits as cards in a real Chromium.

Each card shows the image, its caption as it is now (literally: markup is
text), and why it is there with the numbers it rests on. A person fixes the
caption on the page (journaled and atomic like apply: `capcheck undo` takes
it back) or says it is right; either is recorded so that a reload and the
training gate see it. A file losses.json no longer backs is one line on its
card. The losses.json is written here in the format `capcheck train` keeps
(no training needed).
"""

import hashlib
import json
import statistics
import subprocess
import sys

import pytest

from captions.dataset import iter_images
from verifier.core.store import Store
from verifier.human import gate
from verifier.human.review import ReviewTree
from verifier.human.review_loss import EDITED, RIGHT
from verifier.human.route_losses import keep, losses_path

from browser import browser, page  # noqa: F401  (fixtures)
from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
RATIOS = [0.95, 0.90, 0.52, 0.51, 0.50, 0.50, 0.49, 0.49, 0.48, 0.48, 0.47, 0.46]
MARKUP = "<b>x</b>, [red]alert[/red] & </textarea>\n"


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def plant_losses(root):
    """losses.json as `capcheck train` keeps it: 12 images, the two worst beyond Tukey's fence."""
    images = sorted(item.image for item in iter_images(root))
    assert len(images) == len(RATIOS)
    q1, _, q3 = statistics.quantiles(RATIOS, n=4, method="inclusive")
    fence = q3 + 1.5 * (q3 - q1)
    entries = [{"image": image.relative_to(root).as_posix(), "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
                "loss_lora": round(0.2 * ratio, 6), "loss_base": 0.2, "ratio": ratio, "worst": ratio > fence}
               for image, ratio in zip(images, RATIOS, strict=True)]
    keep(root, {"lora": "keichan_epoch010.safetensors", "images_scored": len(entries),
                "rule": "ratio > Q3 + 1.5 IQR of the ratios (Tukey's upper fence); no fence under 4 images",
                "quartiles": {"q1": q1, "q3": q3, "iqr": q3 - q1, "fence": fence},
                "worst": sum(e["worst"] for e in entries), "images": entries})
    return [e["image"] for e in entries if e["worst"]], fence


@pytest.fixture
def routed(example_dataset):
    """The Keichan example built, its losses planted, the worst fits routed; the worst caption holds markup."""
    root = example_dataset
    assert capcheck("build", root, "--policy", POLICY).returncode == 0
    worst, fence = plant_losses(root)
    assert worst == [e["image"] for e in json.loads(losses_path(root).read_text())["images"][:2]]
    caption = (root / worst[0]).with_suffix(".txt")
    caption.write_text(caption.read_text() + MARKUP, newline="")
    proc = capcheck("route", root, "--losses")
    assert proc.returncode == 0, proc.stderr
    assert f"in the browser: capcheck review {root}" in proc.stdout  # the next step names the page too
    assert f"capcheck verify {root} --only-losses" in proc.stdout
    return root, worst, fence


@pytest.fixture
def served(routed):
    """`capcheck review` as a user starts it; yields (url, root, worst, fence)."""
    root, worst, fence = routed
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", "review", str(root), "--no-open", "--policy",
                             POLICY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = proc.stdout.readline().split()[1] if first else ""
        assert first.startswith("capcheck review: 2 image(s) waiting in"), first + proc.stderr.read()
        yield url, root, worst, fence
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def card_of(page, image):  # noqa: F811
    return page.locator(f'.card.loss:has(.name:text-is("{image}"))')


def test_loss_cards_show_the_caption_as_it_is_and_the_ratio_with_what_it_rests_on(served, page):  # noqa: F811
    url, root, worst, fence = served
    page.goto(url)
    assert page.locator(".card.loss").count() == 2
    assert page.text_content("section[data-aspect=loss] h2") == "loss · 2 image(s) the LoRA fit worst"
    assert page.eval_on_selector_all(".card.loss .name", "ns => ns.map(n => n.textContent)") == worst  # worst first
    card = card_of(page, worst[0])
    why = card.locator(".why").inner_text().splitlines()
    assert why[0].startswith(f"ratio 0.950 > fence {fence:.3f} (Q3 + 1.5 IQR of 12 images: Q1 ")
    assert why[1] == "loss 0.1900 with the LoRA, 0.2000 without (ratio = with / without; rank 1 of 12, worst first)"
    assert why[2] == "LoRA: keichan_epoch010.safetensors"
    text = (root / worst[0]).with_suffix(".txt").read_text()
    assert card.locator("textarea").input_value() == text  # the caption now, byte for byte, markup as text
    assert MARKUP.strip() in card.locator("textarea").input_value()
    assert card.locator("b").count() == 0 and page.locator("textarea").count() == 2  # nothing interpreted
    assert page.eval_on_selector_all("img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")


def test_a_caption_fixed_on_the_page_is_journaled_and_undo_restores_it(served, keichan, page):  # noqa: F811
    url, root, worst, _ = served
    caption = (root / worst[1]).with_suffix(".txt")
    before = caption.read_bytes()
    fixed = before.decode().replace("full body", "cowboy shot") + "edited on the page\n"
    page.goto(url)
    card = card_of(page, worst[1])
    card.locator("textarea").fill(fixed)
    card.locator("textarea").press("Control+End")
    page.keyboard.type("j k 3 0 ")  # typed into the caption: text, not the page's keys (select, move)
    page.keyboard.press("Backspace")
    fixed += "j k 3 0"
    page.keyboard.press("Control+Enter")  # saves, as the button does
    page.wait_for_function("document.getElementById('status').textContent.includes('caption saved')")
    assert page.text_content("#status") == f"{worst[1]}: caption saved (journaled: capcheck undo takes it back)"
    assert caption.read_text() == fixed and not list(caption.parent.glob(".*.tmp"))
    with Store(root) as store:
        run = store.latest_run("review")
        [row] = store.journal(run["id"])
        assert (row["path"], row["before"], row["after"]) == (caption.relative_to(root).as_posix(), before.decode(),
                                                              fixed)
        passed = gate.check(root, store, keichan).passed
    assert passed[worst[1]] == gate.INGESTED  # the gate: settled by a person, not "caption changed since"
    page.reload()
    card = card_of(page, worst[1])
    assert "settled" in card.get_attribute("class")
    assert card.locator(".done").text_content() == "caption fixed on the review page: nothing waits"

    proc = capcheck("undo", root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"capcheck undo: run {run['id']} (review): restored 1 caption(s), deleted 0")
    assert caption.read_bytes() == before
    page.reload()  # the text it was fixed from has no decision: waiting again
    assert "settled" not in card_of(page, worst[1]).get_attribute("class")
    assert card_of(page, worst[1]).locator("textarea").input_value() == before.decode()


def test_caption_is_right_persists_across_a_reload_and_the_gate_sees_it(served, keichan, page):  # noqa: F811
    url, root, worst, _ = served
    caption = (root / worst[0]).with_suffix(".txt")
    before = caption.read_bytes()
    page.goto(url)
    card_of(page, worst[0]).locator("textarea").fill("half an edit")
    card_of(page, worst[0]).locator("button[data-act=right]").click()  # which is right, the box or the file?
    page.wait_for_function("document.getElementById('status').className === 'bad'")
    assert page.text_content("#status") == (f"{worst[0]}: the caption has unsaved changes: save them, or reload to "
                                            "drop them")
    page.reload()
    card_of(page, worst[0]).locator("button[data-act=right]").click()
    page.wait_for_function("document.getElementById('status').textContent.endsWith('(recorded)')")
    assert caption.read_bytes() == before  # nothing written to the caption
    assert page.text_content("header p").startswith("1 image(s) waiting for a person (1 worst fit(s) already")
    page.reload()
    card = card_of(page, worst[0])
    assert "settled" in card.get_attribute("class")
    assert card.locator(".done").text_content() == "a person said the caption is right: nothing waits"
    assert "1 image(s) waiting for a person (1 worst fit(s) already decided: marked done)" in page.text_content(
        "header")
    with Store(root) as store:
        assert gate.check(root, store, keichan).passed[worst[0]] == gate.INGESTED
        assert [r["how"] for r in store.db.execute("SELECT how FROM resolutions")] == [RIGHT]
    caption.write_text(before.decode() + "a hand edit\n")  # another text: the decision was about the old one
    page.reload()
    assert "settled" not in card_of(page, worst[0]).get_attribute("class")


def test_a_stale_loss_folder_is_one_line_on_its_card(routed, page, keichan):  # noqa: F811
    root, worst, _ = routed
    data = json.loads(losses_path(root).read_text())
    data["images"] = [e for e in data["images"] if e["image"] != worst[1]]  # a later run that no longer lists it
    keep(root, data)
    from verifier.human.review_page import ReviewServer

    with ReviewServer(ReviewTree(root, keichan)) as server:
        page.goto(server.url)
        stale = card_of(page, "loss/" + worst[1].rsplit("/", 1)[-1])  # unknown to losses.json: named by its file
        assert stale.locator(".warn").all_text_contents() == [
            "not in the current losses.json: a folder left from an earlier run (run `capcheck route DATASET "
            "--losses` again, or delete the file)"]
        assert stale.locator("textarea").count() == 0 and stale.locator(".why li").count() == 0
        assert card_of(page, worst[0]).locator("textarea").count() == 1  # the others are whole
        losses_path(root).unlink()  # no losses.json at all: every card says so, the page still loads
        page.reload()
        lines = page.eval_on_selector_all(".card.loss", "cs => cs.map(c => c.querySelector('.warn').textContent)")
    assert len(lines) == 2 and all(line.startswith(f"no losses to show: {losses_path(root)}: no losses yet")
                                   for line in lines)


def test_what_the_page_cannot_decide_is_one_line(routed, keichan):
    root, worst, _ = routed
    tree = ReviewTree(root, keichan)
    [card, _] = tree.cards()["loss"]
    assert card.image == worst[0] and card.caption.endswith(MARKUP)
    caption = (root / card.image).with_suffix(".txt")
    caption.write_text(card.caption + "edited in an editor meanwhile\n")
    with pytest.raises(Exception, match="caption changed on disk since the page was loaded; reload") as raised:
        tree.decide(card.path, card.loss.caption_sha, "1girl, solo\n")
    assert "\n" not in str(raised.value) and caption.read_text().endswith("meanwhile\n")  # not overwritten
    [card, _] = tree.cards()["loss"]
    with pytest.raises(Exception, match="an empty caption is not saved"):
        tree.decide(card.path, card.loss.caption_sha, "  \n")
    with pytest.raises(Exception, match="a worst fit is not sorted into a folder"):
        tree.move(card.path, "cowboy_shot")
    crlf = card.caption.replace("\n", "\r\n")  # written on Windows: a textarea's \n comes back as \r\n
    caption.write_bytes(crlf.encode())
    [card, _] = tree.cards()["loss"]
    new, changed = tree.decide(card.path, card.loss.caption_sha, card.caption.replace("\r\n", "\n") + "more\n")
    assert changed and caption.read_bytes() == (crlf + "more\r\n").encode() and new.loss.decided == EDITED
    assert tree.ingest_all() == []  # the loss folder is not an aspect's: ingest leaves it alone


def test_a_losses_json_edited_into_nonsense_is_one_line_on_each_card(routed, keichan):
    root, worst, _ = routed
    keep(root, {"images": [{"image": worst[0], "ratio": "high"}]})
    cards = ReviewTree(root, keichan).cards()["loss"]
    assert [c.loss.stale for c in cards] == [
        f"no losses to show: {losses_path(root)}: entry 1 of 'images' is not an image with its ratio, loss_lora and "
        "loss_base"] * 2
    name = worst[0].rsplit("/", 1)[-1]  # an entry of that file's name, pointing out of the dataset
    keep(root, {"images": [{"image": f"../{name}", "ratio": 2.0, "loss_lora": 0.2, "loss_base": 0.1, "worst": True,
                            "sha256": "x"}]})
    (root.parent / name).write_bytes(b"an image outside")
    (root.parent / name).with_suffix(".txt").write_text("not the dataset's")
    card = next(c for c in ReviewTree(root, keichan).cards()["loss"] if c.path == f"loss/{name}")
    assert (card.image, card.caption, card.loss.stale) == (
        None, None, f"../{name}: not a path inside the dataset (losses.json edited by hand?)")


def test_train_names_the_worst_fits_still_waiting_and_not_the_decided(routed, keichan, tmp_path):
    root, worst, _ = routed
    config = tmp_path / "train.yaml"  # the gate comes first: no model is loaded, so none is needed
    config.write_text(f"model_path: {json.dumps(str(tmp_path))}\ndevice: cpu\noutput_dir: {json.dumps(str(tmp_path))}\n")
    proc = capcheck("train", root, "--config", config)
    assert proc.returncode == 1 and "not training: 12 of 12 captions are not verified" in proc.stdout  # never verified
    note = ("note: {} worst fit(s) of the last run wait in _review/loss/ for a person's word on the caption (training "
            f"does not wait for them): capcheck review {root}")
    assert note.format(2) in proc.stderr
    tree = ReviewTree(root, keichan)
    card = next(c for c in tree.cards()["loss"] if c.image == worst[0])
    tree.decide(card.path, card.loss.caption_sha, None)
    proc = capcheck("train", root, "--config", config)
    assert note.format(1) in proc.stderr
    assert f"{worst[0]}: " not in proc.stdout and f"{worst[1]}: never verified" in proc.stdout  # the gate saw it


def test_a_save_while_another_writer_holds_the_dataset_waits_then_refuses_in_one_line(routed, keichan, monkeypatch):
    import http.client

    from verifier.human.review_page import ReviewServer

    root, worst, _ = routed
    monkeypatch.setenv("CAPCHECK_LOCK_WAIT", "0.5")
    code = ("import sys, time\nfrom captions.lock import DatasetLock\n"
            "with DatasetLock(sys.argv[1], 'apply'):\n    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    caption = (root / worst[1]).with_suffix(".txt")
    before = caption.read_text()
    try:
        assert holder.stdout.readline().strip() == "held"
        with ReviewServer(ReviewTree(root, keichan)) as server:
            card = next(c for c in server.tree.cards()["loss"] if c.image == worst[1])

            def save():
                conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
                conn.request("POST", "/caption", json.dumps({"path": card.path, "sha": card.loss.caption_sha,
                                                              "text": before + "fixed\n"}),
                             {"Content-Type": "application/json"})
                answer = conn.getresponse()
                return answer.status, json.loads(answer.read())

            status, body = save()
            assert status == 400 and f"the dataset is busy: pid {holder.pid} (capcheck apply)" in body["error"]
            assert "\n" not in body["error"] and caption.read_text() == before  # nothing written
            holder.kill()  # kill -9: the OS drops its lock
            holder.wait(timeout=10)
            status, body = save()
        assert status == 200 and caption.read_text() == before + "fixed\n"
        assert 'class="card loss settled"' in body["card"]
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_card_a_newer_run_no_longer_calls_a_worst_fit_says_so(routed, keichan):
    from verifier.human.review_loss import undecided

    root, worst, _ = routed
    data = json.loads(losses_path(root).read_text())
    data["images"][0]["worst"] = False  # a newer run: it fits now
    keep(root, data)
    card = next(c for c in ReviewTree(root, keichan).cards()["loss"] if c.image == worst[0])
    assert card.loss.stale == ("no longer a worst fit by the current losses.json (run `capcheck route DATASET "
                               "--losses` again to refresh the folder)")
    assert card.loss.lines[0].startswith("ratio 0.950 > fence")  # its numbers are still shown, as they are
    with Store(root) as store:
        assert undecided(root, store) == [worst[1]]
