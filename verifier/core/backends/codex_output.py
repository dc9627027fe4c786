"""What `codex exec` says on stderr, read the way a person would read it.

Codex 0.169 writes a header (`model: gpt-5.x` between `--------` rules),
echoes the prompt (our caption, which may contain any word), prints each
failure as `ERROR: <message>` (twice: once live, once as the final error;
`ERROR: Reconnecting... 2/5` while it retries on its own), and ends with
`tokens used` and the count. Only codex's own lines are read: a `401` in
the session UUID, a timestamp or the echoed caption means nothing.
"""

from __future__ import annotations

import json
import re

# A final ERROR line with one of these will not get better by asking again.
_FATAL = ("missing environment variable", "quota exceeded", "insufficient_quota", "unexpected status 401",
          "unexpected status 403", "401 unauthorized", "403 forbidden", "incorrect api key", "invalid api key",
          "invalid_api_key", "model_not_found", "model_not_supported", "is not supported", "does not exist",
          "not logged in", "please log in", "login required", "unexpected argument", "unrecognized")
_TOKENS = re.compile(r"^tokens used[:\s]*([\d,]+)\s*$", re.M)
_RULE = "--------"


class CodexOutput:
    def __init__(self, stderr: str):
        self.text = stderr
        self.lines = [ln.strip() for ln in stderr.splitlines()]

    @property
    def model(self) -> str | None:
        """The model named in the header, if the header was printed."""
        rules = [i for i, ln in enumerate(self.lines) if ln == _RULE]
        if len(rules) < 2:
            return None
        for line in self.lines[rules[0] + 1:rules[1]]:
            if line.startswith("model:"):
                return line.removeprefix("model:").strip() or None
        return None

    @property
    def tokens(self) -> int | None:
        found = _TOKENS.findall(self.text)
        return int(found[-1].replace(",", "")) if found else None

    def error_line(self) -> str | None:
        """Codex's own final error as one line: the last `ERROR:` that is not
        a retry notice; else its last retry notice; else a usage error."""
        errors = [ln.removeprefix("ERROR:").strip() for ln in self.lines if ln.startswith("ERROR:")]
        final = [e for e in errors if not e.startswith("Reconnecting")]
        if final or errors:
            return _readable(final[-1] if final else errors[-1])
        usage = next((ln for ln in self.lines if ln.lower().startswith("error:")), None)
        return _readable(usage.split(":", 1)[1].strip()) if usage else None

    @property
    def fatal(self) -> bool:
        line = (self.error_line() or "").lower()
        return any(word in line for word in _FATAL)

    @property
    def offline(self) -> bool:
        """Codex could not reach its provider at all (nothing listens there)."""
        return "waiting for network" in (self.error_line() or "")

    def tail(self, lines: int = 6) -> str:
        return "\n".join(ln for ln in self.lines[-lines:] if ln)


def _readable(message: str) -> str:
    """A provider's JSON error body -> its message; always one line, not too long."""
    if message.startswith("{"):
        try:
            body = json.loads(message)
        except ValueError:
            body = None
        inner = body.get("error", body) if isinstance(body, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            code = inner.get("code")
            message = inner["message"] + (f" ({code})" if isinstance(code, str) else "")
    return " ".join(message.split())[:300]
