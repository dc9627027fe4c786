"""Base URLs as capcheck shows and stores them, and as the SDK must get them.

A `--base-url` may carry a secret: `http://user:pass@host/v1` (basic auth,
which httpx sends from the URL) or `?key=…` (Gemini-style keys, proxies).
`redact_url` is the one form capcheck ever prints, stores (the runs' args,
the batches table) or puts in an error: the password, a user name that
stands alone (often a token), and every secret-looking query value become
`***`; the rest is kept as `urlsplit` reads it (the scheme lower-cased, an
empty `?` or `#` dropped: the same URL), so a URL without credentials
comes back the same every time and everything keyed by it stays reachable.

`redact_args` does the same to every URL in a run's stored arguments: a
store written before capcheck redacted them is cleaned by a migration.

`split_query` is for the SDK: openai appends `/chat/completions` to the
base URL's text, so `…/v1?key=abc` became `/v1/?key=abcchat/completions`
(seen on the wire); the query goes in `default_query` instead.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

HIDDEN = "***"
# query parameters whose value is a secret (matched case-insensitively, as a whole name or its last `_` part)
SECRET_PARAMS = re.compile(r"(^|_)(key|apikey|token|secret|password|passwd|pass|sig|signature|auth|"
                           r"authorization|access_token|credential|credentials)$", re.I)


def redact_url(url: str | None) -> str | None:
    """`url` with its credentials shown as `***` (see the module doc); None stays None."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all: nothing to keep, and it may hold the secret
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{host}" if has_password and user else f"{HIDDEN}@{host}"
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}={HIDDEN}" if eq and SECRET_PARAMS.search(name) else pair


def redact_urls(urls: str | list[str] | None) -> str | list[str] | None:
    """`redact_url` over one URL or a list of them (the shapes `--base-url` takes)."""
    if isinstance(urls, list):
        return [redact_url(u) for u in urls]
    return redact_url(urls)


def redact_args(text: str | None) -> str | None:
    """A run's stored arguments (JSON) with every URL in them as `redact_url` shows it; the text as
    it was, byte for byte, when no URL in it holds a secret. For stores written before capcheck
    redacted. Text that is not JSON is hidden whole if it holds anything like a URL: what it
    was cannot be known, and a secret may be in it."""
    if not text:
        return text
    try:
        args = json.loads(text)
    except ValueError:
        return HIDDEN if "://" in text else text
    cleaned = _redact_values(args)
    if cleaned == args:
        return text
    return json.dumps(cleaned)  # json.loads kept the keys' order; capcheck wrote them with these defaults


def _redact_values(value: object) -> object:
    if isinstance(value, str):
        return _redacted_if_secret(value) if "://" in value else value
    if isinstance(value, list):
        return [_redact_values(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_values(v) for k, v in value.items()}
    return value


def _redacted_if_secret(url: str) -> str:
    """`redact_url(url)` where it hides something, else `url` untouched (`redact_url` also
    normalises: `HTTP://` to `http://`, a bare `?` dropped)."""
    shown = redact_url(url)
    try:
        plain = urlunsplit(urlsplit(url))
    except ValueError:
        return shown
    return url if shown == plain else shown


def split_query(url: str | None) -> tuple[str | None, dict[str, str]]:
    """(the URL without its query, the query as the SDK's `default_query`)."""
    if not url:
        return url, {}
    parts = urlsplit(url)
    if not parts.query:
        return url, {}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment)), dict(
        parse_qsl(parts.query, keep_blank_values=True))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a base URL (None: it can): checked before any request is made."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "not an http:// or https:// URL (e.g. http://localhost:8000/v1)"
    if not parts.hostname:
        return "no host in it (e.g. http://localhost:8000/v1)"
    return None
