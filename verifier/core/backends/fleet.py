"""Several servers of one model behind one backend (a vLLM fleet, two Ollama boxes).

Each request goes to the live server with the fewest requests in flight,
never more than `concurrency` on any one of them. What a server's failures
mean depends on whether anything has answered yet:

- nothing has answered and every server refused the connection: the run
  stops at once with one line naming the URLs (an unreachable `--base-url`
  used to cost every image four attempts and one error line each);
- a server that refuses connections twice in a row (or never answered
  while others do) is taken out of the rotation with one message, and the
  pool retries the request on the others; when none is left, the run stops.

Only a refused connection counts. A dropped connection or a timeout is a
server that is there but struggling: the pool's retries handle those.
A server taken out stays out for the rest of the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from verifier.core.backends import Backend, Reply, Request, Retryable
from verifier.errors import BackendUnavailable

OUT_AFTER = 2  # consecutive refused connections that take an answering server out


@dataclass
class Server:
    backend: Backend
    url: str
    in_flight: int = 0
    requests: int = 0
    reached: bool = False  # it has answered something (even an HTTP error)
    refused: int = 0  # refused connections in a row
    out: bool = False


class Fleet:
    def __init__(self, backends: list[Backend], urls: list[str], concurrency: int,
                 notice: Callable[[str], None] | None = None):
        if not backends or len(backends) != len(urls):
            raise ValueError("one URL per backend")
        self.name = backends[0].name
        self.timeout_grace = getattr(backends[0], "timeout_grace", 0.0)
        self.servers = [Server(b, u) for b, u in zip(backends, urls, strict=True)]
        self.concurrency = concurrency
        self.notice = notice or (lambda message: None)
        self._changed = asyncio.Event()  # a slot was given back or a server taken out

    @property
    def model(self) -> str:
        return self.servers[0].backend.model  # codex learns it from its first answer

    @property
    def live(self) -> list[Server]:
        return [s for s in self.servers if not s.out]

    async def ask(self, request: Request) -> Reply:
        server = await self._acquire()
        try:
            reply = await server.backend.ask(request)
        except Retryable as exc:
            if exc.connect:
                self._refused(server, exc.reason)
            elif exc.connect is not None:  # the server answered, with an error
                server.reached, server.refused = True, 0
            raise
        except asyncio.CancelledError:  # a timeout says nothing about the server
            raise
        except Exception:
            server.reached, server.refused = True, 0
            raise
        finally:
            server.in_flight -= 1
            self._changed.set()
        server.reached, server.refused = True, 0
        return reply

    async def _acquire(self) -> Server:
        while True:
            live = self.live
            if not live:
                raise self._all_gone()
            server = min(live, key=lambda s: (s.refused, s.in_flight))  # a refusing one last
            if server.in_flight < self.concurrency:
                server.in_flight += 1
                server.requests += 1
                return server
            self._changed.clear()  # no await between the check and the clear: no wake-up is lost
            await self._changed.wait()

    def _refused(self, server: Server, reason: str) -> None:
        server.refused += 1
        if not any(s.reached for s in self.servers):
            if all(s.refused for s in self.servers):
                urls = ", ".join(s.url for s in self.servers)
                raise BackendUnavailable(urls, f"cannot connect ({reason}); is the server running?")
            return
        if not server.out and (server.refused >= OUT_AFTER or not server.reached):
            server.out = True
            self._changed.set()
            left = len(self.live)
            if not left:
                raise self._all_gone(reason)
            self.notice(f"{server.url} stopped answering ({reason}); taken out, continuing on {left} other "
                        f"server{'s' if left > 1 else ''}")

    def _all_gone(self, reason: str = "") -> BackendUnavailable:
        urls = ", ".join(s.url for s in self.servers)
        why = f" ({reason})" if reason else ""
        return BackendUnavailable(urls, f"every server stopped answering{why}; the answers so far are stored, "
                                        f"run the same command again when one is back")

    async def aclose(self) -> None:
        for server in self.servers:
            await server.backend.aclose()
