"""What the demo server is told to do wrong, and what it counts.

`Faults` is the server's configuration: latency, scripted or random
provider faults (`FAULTS`), answer styles, a credential it demands. `Stats`
is what it saw: requests, the most in flight, requests and answers per
image, and a log a test reads the order of requests from.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

FAULTS = ("429", "500", "503", "401", "quota", "no_model", "hang", "drop", "refuse_stop", "refuse_filter",
          "refusal_field", "safety", "empty", "garbage", "length", "fenced", "chatty")
APOLOGY = "I'm sorry, but I can't help with evaluating this image."


@dataclass
class Faults:
    latency: float = 0.0  # seconds before every answer
    jitter: float = 0.0  # plus uniform(0, jitter)
    scripted: dict[str, list[str]] = field(default_factory=dict)  # image key -> fault per request ("ok": answer)
    rate: float = 0.0  # chance of a random fault per request
    kinds: tuple[str, ...] = ("429", "500", "hang", "drop")
    retry_after: float = 1.0
    hang: float = 30.0
    style: str = "plain"  # answer formatting: plain | fenced | chatty
    view_under_a: bool = False  # fixline: views under letter A, as the article's model wrote them
    yes_sayer: bool = False  # the tags audit: call every asked tag present (a model that agrees with everything)
    batches_only: bool = False  # no live endpoint: chat completions answer 404 (a `/v1/batches`-only server)
    seed: int = 0
    # a server that wants a credential in its URL: "user:pass" (basic auth) or "key=VALUE" (a query
    # parameter); a request without it gets 401, so a test sees that capcheck really sent it
    credential: str = ""


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_image: Counter[str] = Counter()  # requests per image key
        self.answered: Counter[str] = Counter()  # 200 answers per image key
        self.log: list[tuple[str, str, float]] = []  # (image key, fault or "ok", time.monotonic())

    def reset(self) -> None:
        with self.lock:
            self.requests = self.max_in_flight = 0
            self.per_image.clear()
            self.answered.clear()
            self.log.clear()

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "max_in_flight": self.max_in_flight, "in_flight": self.in_flight,
                    "per_image": dict(self.per_image), "answered": dict(self.answered)}
