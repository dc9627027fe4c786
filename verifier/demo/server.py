"""A loopback OpenAI-compatible server around the demo model, with faults on demand.

A real HTTP/1.1 server (threads, keep-alive) that the `openai` SDK talks
to exactly as it talks to a provider. It answers `POST .../chat/completions`
(and `POST .../responses`, streamed, for the Codex CLI) from the demo
model's truth table and can misbehave the way providers do:
latency, 429 with Retry-After, 5xx, hanging past the client's timeout,
dropped connections, fenced or chatty JSON, refusals (`stop` with an
apology, `content_filter`, `message.refusal`, upper-case `SAFETY`), empty
and unreadable answers. It counts requests and the most ever in flight.
This module is the HTTP side; what a completion answers is
`completions.py`, the faults and the counts `faults.py`.

    python -m verifier.demo.server --truth truth.json [--root DIR] [--policy P] [--latency 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from verifier.demo.batches import BatchDesk
from verifier.demo.completions import complete, unpack
from verifier.demo.faults import FAULTS, Faults, Stats
from verifier.demo.model import DemoModel, Known
from verifier.demo.responses import as_chat_request, sse_events


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet
        return

    def _desk(self, method: str, body: bytes = b"") -> bool:
        """The batch API's routes, if this is one of them."""
        if "/files" not in self.path and "/batches" not in self.path:
            return False
        status, data, content_type = self.server.desk.handle(method, self.path, self.headers, body)
        self._send(status, data, content_type)
        return True

    def do_GET(self) -> None:
        if self._desk("GET"):
            return
        if self.path.rstrip("/").endswith("/stats"):  # for benchmarks: what the server saw
            snap = self.server.stats.snapshot()
            self._json(200, {k: snap[k] for k in ("requests", "max_in_flight", "in_flight")})
        elif self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "capcheck-demo", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _refused(self) -> bool:
        """401 when the server wants a credential (`Faults.credential`) this request lacks."""
        want = self.server.faults.credential
        if not want:
            return False
        if "=" in want:
            given = want in urlsplit(self.path).query.split("&")
        else:
            given = self.headers.get("Authorization") == "Basic " + base64.b64encode(want.encode()).decode()
        if not given:
            self._json(401, {"error": {"message": "missing or wrong credentials", "code": "invalid_api_key"}})
        return not given

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self._refused():
            return
        if self._desk("POST", body):
            return
        route = urlsplit(self.path).path.rstrip("/")  # a query (`?key=`) is not part of the route
        responses = route.endswith("/responses")  # the Codex CLI's wire protocol
        if not (responses or route.endswith("/chat/completions")) or self.server.faults.batches_only:
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        stats = self.server.stats
        with stats.lock:
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            request = json.loads(body)
            self._complete(as_chat_request(request) if responses else request, responses)
        finally:
            with stats.lock:
                stats.in_flight -= 1

    def _complete(self, request: dict, responses: bool = False) -> None:
        srv = self.server
        known, fault = srv.take(request)
        wait = srv.faults.latency + srv.rng_uniform(srv.faults.jitter) + (srv.faults.hang if fault == "hang" else 0)
        if not self._wait(wait):
            self.close_connection = True  # the client gave up (its timeout): stop, as real servers do
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, payload, headers = srv.complete(request, known, fault)
        if responses and status == 200:
            self._send(200, sse_events(payload, srv.stats.requests), "text/event-stream", headers)
        else:
            self._json(status, payload, headers)

    def _wait(self, seconds: float) -> bool:
        """Sleep, but notice a client that hangs up meanwhile; False if it did."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
                time.sleep(max(0.0, deadline - time.monotonic()))  # data, not a hang-up: just wait
                return True
        return True

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default 5 makes a burst of 128 connects wait on SYN retries

    def __init__(self, address: tuple[str, int], model: DemoModel, faults: Faults):
        super().__init__(address, _Handler)
        self.model, self.faults, self.stats = model, faults, Stats()
        self.desk = BatchDesk(self)
        self._rng = random.Random(faults.seed)
        self._rng_lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (its timeout, a cancelled run) is normal here."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def take(self, request: dict) -> tuple[Known | None, str]:
        """Count a request for a completion; which image it is about and the fault it gets."""
        _, image = unpack(request)
        known = self.model.identify(image) if image else None
        key = known.key if known else "?"
        fault = self.next_fault(key)
        with self.stats.lock:
            self.stats.per_image[key] += 1
            self.stats.log.append((key, fault, time.monotonic()))
        return known, fault

    def complete(self, request: dict, known: Known | None, fault: str) -> tuple[int, dict, dict[str, str]]:
        """(HTTP status, body, headers) for a chat completion (completions.complete)."""
        return complete(self.model, self.faults, self.stats, request, known, fault)

    def rng_uniform(self, high: float) -> float:
        if high <= 0:
            return 0.0
        with self._rng_lock:
            return self._rng.uniform(0, high)

    def next_fault(self, key: str) -> str:
        script = self.faults.scripted.get(key)
        with self.stats.lock:
            seen = self.stats.per_image[key]
        if script is not None and seen < len(script):
            return script[seen]
        with self._rng_lock:
            if self.faults.rate and self._rng.random() < self.faults.rate:
                return self._rng.choice(self.faults.kinds)
        return "ok"


class DemoServer:
    """Start with `with DemoServer(model) as server:`; `server.url` is the base URL (…/v1)."""

    def __init__(self, model: DemoModel, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port), model, faults or Faults())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def stats(self) -> Stats:
        return self._server.stats

    @property
    def desk(self) -> BatchDesk:
        return self._server.desk

    @property
    def faults(self) -> Faults:
        return self._server.faults

    def start(self) -> DemoServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    from captions.policy import load_policy

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, type=Path)
    ap.add_argument("--root", type=Path, help="image folder the truth paths are relative to (default: beside it)")
    ap.add_argument("--policy", type=Path, help="caption policy (needed for the fixline protocol)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default="429,500,hang,drop", help=f"kinds for --fault-rate, from {','.join(FAULTS)}")
    ap.add_argument("--style", default="plain", choices=("plain", "fenced", "chatty"))
    ap.add_argument("--yes-sayer", action="store_true", help="call every asked tag present")
    args = ap.parse_args(argv)
    model = DemoModel.load(args.truth, args.root, load_policy(args.policy) if args.policy else None)
    faults = Faults(latency=args.latency, jitter=args.jitter, rate=args.fault_rate,
                    kinds=tuple(k for k in args.faults.split(",") if k), style=args.style,
                    yes_sayer=args.yes_sayer)
    server = DemoServer(model, faults, args.host, args.port)
    print(server.url, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        snap = server.stats.snapshot()
        print(json.dumps({"requests": snap["requests"], "max_in_flight": snap["max_in_flight"]}), flush=True)


if __name__ == "__main__":
    main()
