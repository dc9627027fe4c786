"""`capcheck review`: the review folders as a page in the browser, on loopback.

A small stdlib HTTP server (no web framework) on 127.0.0.1 over a
`ReviewTree`. The page shows the images waiting for a person, grouped by
aspect, each with its caption, the model's call and the choices; a click or
a number key moves the file on disk (as Finder would), and a button at the
end runs `ingest` on the same folders. Every request reads the folders
again, so a reload shows a move made in Finder.

    GET  /                 the page (its script and style: /review.js, /review.css)
    GET  /image/<path>     an image file in the review folder
    POST /move             {"path": "framing/full_body/a.png", "to": "cowboy_shot"}
    POST /ingest           {}
    POST /caption          {"path": "loss/a.png", "sha": "<caption sha256 as loaded>", "text": "..."}
    POST /right            {"path": "loss/a.png", "sha": "<caption sha256 as loaded>"}

Only this machine's browser may use it: it listens on 127.0.0.1 only,
answers only requests addressed to that host and port (a web page elsewhere
cannot reach it through a DNS name that points here), and takes POSTs only
as `application/json` from its own origin (a form on another site cannot
send one). Errors come back as one line.
"""

from __future__ import annotations

import html
import json
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from captions.dataset import caption_path
from captions.errors import CaptionsError
from verifier.core.report_page import highlight, value_words
from verifier.core.tags import TAGS
from verifier.errors import VerifierError
from verifier.human.folders import UNSURE, folder_name
from verifier.human.review import Card, ReviewTree
from verifier.human.review_loss import DECIDED, LOSS

HOST = "127.0.0.1"
ASSETS = Path(__file__).with_name("review_assets")


# A move or an ingest is a JSON object of a path and a folder name: a few hundred bytes; a caption, a few KB.
MAX_BODY = 64 * 1024


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tree: ReviewTree, port: int = 0):
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as exc:
            raise VerifierError(f"{HOST}:{port}", f"cannot listen: {exc.strerror or exc}") from None
        self.tree = tree
        self.lock = threading.Lock()  # one move or ingest at a time: the folders are shared state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def __enter__(self) -> ReviewServer:
        """`with ReviewServer(tree) as server:` serves from a thread; the CLI calls serve_forever itself."""
        self._thread = threading.Thread(target=self.serve_forever, name="review-page", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    timeout = 30  # a client that stalls mid-request does not hold a thread for ever

    def log_message(self, format: str, *args: object) -> None:
        pass  # the terminal shows what capcheck says, not an access log

    def _ours(self, *, posting: bool = False) -> bool:
        """Addressed to this server by this machine's name for it (and, for
        a change, sent by its own page, when the browser says where from)."""
        hosts = {f"{HOST}:{self.server.server_address[1]}", f"localhost:{self.server.server_address[1]}"}
        origin = self.headers.get("Origin")
        return self.headers.get("Host", "") in hosts and (
            not posting or origin is None or origin.removeprefix("http://").rstrip("/") in hosts)

    def do_GET(self) -> None:
        if not self._ours():
            return self._fail(403, "this page answers only http://127.0.0.1 on this machine")
        path = urlsplit(self.path).path
        try:
            if path == "/":
                return self._send(200, "text/html; charset=utf-8", render(self.server.tree).encode())
            if path in ("/review.js", "/review.css"):
                kind = "text/javascript" if path.endswith(".js") else "text/css"
                return self._send(200, f"{kind}; charset=utf-8", (ASSETS / path[1:]).read_bytes())
            if path.startswith("/image/"):
                file = self.server.tree.inside(unquote(path[len("/image/"):]))
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                return self._send(200, kind, file.read_bytes())
        except CaptionsError as exc:
            return self._fail(404, str(exc))
        except OSError as exc:  # the review folder changed under us
            return self._fail(500, f"{exc.filename or 'review folder'}: {exc.strerror or exc}")
        self._fail(404, f"{path}: no such page")

    def do_POST(self) -> None:
        if not self._ours(posting=True):
            return self._fail(403, "this page answers only http://127.0.0.1 on this machine")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self._fail(415, "send application/json")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._fail(400, "Content-Length is not a number")
        if not 0 <= length <= MAX_BODY:  # read nothing: `Content-Length: 99999999999` was a MemoryError
            self.close_connection = True  # the unread body must not be taken for the next request
            return self._fail(413, f"a request body is at most {MAX_BODY} bytes (this one says {length})")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as exc:
            return self._fail(400, f"the request is not JSON ({exc})")
        if not isinstance(body, dict):
            return self._fail(400, "the request is not a JSON object")
        try:
            with self.server.lock:
                if self.path == "/move":
                    new = self.server.tree.move(str(body.get("path", "")), str(body.get("to", "")))
                    return self._json(200, {"path": new, "src": image_url(new)})
                if self.path == "/ingest":
                    done = self.server.tree.ingest_all()
                    lines = [line for aspect, result in done for line in result.summary(aspect)]
                    return self._json(200, {"lines": lines or ["nothing sorted to ingest"]})
                if self.path in ("/caption", "/right"):
                    return self._decide(body)
        except CaptionsError as exc:
            return self._fail(400, str(exc))
        except OSError as exc:
            return self._fail(500, f"{exc.filename or 'review folder'}: {exc.strerror or exc}")
        self._fail(404, f"{self.path}: no such action")

    def _decide(self, body: dict) -> None:
        """A worst fit's caption: saved as the person edited it (/caption), or said to be right (/right)."""
        text = body.get("text") if self.path == "/caption" else None
        if self.path == "/caption" and not isinstance(text, str):
            return self._fail(400, "send the caption's text")
        card, changed = self.server.tree.decide(str(body.get("path", "")), str(body.get("sha", "")), text)
        name = card.image or card.path
        line = (f"{name}: the caption is right (recorded)" if text is None else
                f"{name}: caption saved (journaled: capcheck undo takes it back)" if changed else
                f"{name}: the caption already says that; nothing written")
        return self._json(200, {"card": _loss_card(card), "line": line})

    def _json(self, code: int, data: dict) -> None:
        self._send(code, "application/json", json.dumps(data, ensure_ascii=False).encode())

    def _fail(self, code: int, message: str) -> None:
        self._json(code, {"error": message.splitlines()[0] if message else "error"})

    def _send(self, code: int, kind: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # folders are the truth: never show a stale one
        self.end_headers()
        self.wfile.write(data)


def image_url(path: str) -> str:
    return "/image/" + quote(path)


def waiting(groups: dict[str, list[Card]]) -> int:
    """Cards a person has still to answer (an ingested answer where the file sits is not waiting)."""
    return sum(1 for cards in groups.values() for c in cards if not c.settled)


def render(tree: ReviewTree) -> str:
    groups = tree.cards()
    total = waiting(groups)
    decided = sum(1 for c in groups.get(LOSS, []) if c.settled)
    ingested = sum(len(c) for c in groups.values()) - total - decided
    done = ", ".join(([f"{ingested} more already ingested"] if ingested else [])
                     + ([f"{decided} worst fit(s) already decided"] if decided else []))
    done = f" ({done}: marked done)" if done else ""
    sections = "".join(_loss_section(cards) if aspect == LOSS else _section(tree, aspect, cards)
                       for aspect, cards in groups.items() if cards)
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>capcheck review</title>"
            f"<link rel=stylesheet href=/review.css><script src=/review.js defer></script>"
            f"<header><h1>capcheck review <small>{html.escape(str(tree.root))}</small></h1>"
            f"<p>{total} image(s) waiting for a person{done}. Click a value or press its number to move the selected "
            f"image into that folder (<kbd>0</kbd>: {UNSURE}); <kbd>←</kbd> <kbd>→</kbd> choose the image. Each move "
            f"is a move on disk, in <code>{html.escape(str(tree.review))}</code>; a reload shows moves made "
            f"elsewhere. Nothing changes in a caption until you ingest.</p></header><p id=status role=status></p>"
            f"{sections if total else '<p>Nothing waits for a person.</p>' + sections}"
            f"<footer><button id=ingest>Ingest the sort: rewrite the captions</button>"
            f"<pre id=result role=status></pre></footer></html>\n")


def _section(tree: ReviewTree, aspect: str, cards: list[Card]) -> str:
    choices = _choices(tree, aspect)
    keys = "".join(f"<li>{_key(key)} {html.escape(label)}</li>" for _, label, key in choices)
    return (f'<section data-aspect="{html.escape(aspect)}"><h2>{html.escape(aspect)} · {len(cards)} image(s)</h2>'
            f"<ul class=keys>{keys}</ul><div class=grid>{''.join(_card(tree, c, choices) for c in cards)}</div>"
            f"</section>")


def _choices(tree: ReviewTree, aspect: str) -> list[tuple[str, str, str]]:
    """(folder, label, key): the values in vocabulary order on 1-9 (past nine: a click), _unsure on 0;
    for a tag, kept (the tag is right) on 1 and removed on 2."""
    values = [(folder_name(v), v, str(n) if n <= 9 else "") for n, v in enumerate(tree.values(aspect), start=1)]
    return values if aspect == TAGS else [*values, (UNSURE, UNSURE, "0")]


def _key(key: str) -> str:
    return f"<kbd>{key}</kbd>" if key else ""


def _card(tree: ReviewTree, card: Card, choices: list[tuple[str, str, str]]) -> str:
    if card.mismatch:
        choices = []  # nothing to sort: the caption is edited by hand
    here = folder_name(card.value) if card.value else card.folder
    buttons = "".join(
        f'<button data-to="{html.escape(folder)}" data-key="{key}" aria-pressed="{str(folder == here).lower()}">'
        f"{_key(key)} {html.escape(label)}</button>" for folder, label, key in choices)
    words = [card.tag] if card.tag else value_words(tree.policy, card.aspect, card.says)
    caption = highlight(card.caption, words) if card.caption else \
        "(no caption found: this file is not in the last report)"
    where = "" if card.value or card.folder == UNSURE or card.mismatch else \
        f'<p class=warn>in {html.escape(card.folder)}/, which is not a value of {html.escape(card.aspect)}</p>'
    if card.mismatch and card.image:
        file = caption_path(tree.root / card.image).relative_to(tree.root).as_posix()
        where = f"<p class=warn>edit its caption by hand, in the dataset: {html.escape(file)}</p>"
    if card.settled:
        where += "<p class=done>ingested: the caption says what this folder says</p>"
    name = html.escape(card.image or card.path)
    topic = f" · {html.escape(card.tag)}" if card.tag else ""
    kind = "card settled" if card.settled else "card"
    return (f'<article class="{kind}" tabindex=0 data-path="{html.escape(card.path)}">'
            f'<img loading=lazy src="{image_url(card.path)}" alt="{name}"><div class=name>{name}{topic}</div>'
            f"<dl><dt>caption says</dt><dd>{html.escape(card.says or '(nothing)')}</dd>"
            f"<dt>model</dt><dd>{html.escape(card.model)}</dd></dl>{where}"
            f"<div class=choices>{buttons}</div><pre>{caption}</pre></article>")


def _loss_section(cards: list[Card]) -> str:
    return (f'<section data-aspect="{LOSS}"><h2>{LOSS} · {len(cards)} image(s) the LoRA fit worst</h2>'
            "<p class=intro>A caption that lies is a common reason the LoRA cannot fit an image while it fits the "
            "rest. Fix the caption here (written like apply's fixes: journaled, <code>capcheck undo</code> takes it "
            "back; <kbd>Ctrl</kbd>+<kbd>Enter</kbd> saves) or say it is right.</p>"
            f"<div class=grid>{''.join(_loss_card(c) for c in cards)}</div></section>")


def _loss_card(card: Card) -> str:
    """A worst fit: the image, why it is here (the numbers), its caption now, in a box to fix it."""
    loss = card.loss
    name = html.escape(card.image or card.path)
    why = "".join(f"<li>{html.escape(line)}</li>" for line in loss.lines)
    notes = "".join(f"<p class=warn>{html.escape(line)}</p>" for line in (loss.stale, loss.problem) if line)
    if loss.decided:
        notes += f"<p class=done>{html.escape(DECIDED[loss.decided])}: nothing waits</p>"
    box = ""
    if card.caption is not None:  # the newline after <textarea> is eaten by the parser, so the text keeps its own
        box = (f'<textarea class=caption spellcheck=false rows=9 aria-label="caption of {name}">\n'
               f"{html.escape(card.caption)}</textarea><div class=decide><button data-act=save>Save caption</button>"
               "<button data-act=right>Caption is right</button></div>")
    kind = "card loss settled" if card.settled else "card loss"
    return (f'<article class="{kind}" tabindex=0 data-path="{html.escape(card.path)}" '
            f'data-sha="{html.escape(loss.caption_sha or "")}"><img loading=lazy src="{image_url(card.path)}" '
            f'alt="{name}"><div class=name>{name}</div><ul class=why>{why}</ul>{notes}{box}</article>')
