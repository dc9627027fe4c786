"""Chat Completions through the `openai` SDK, against any compatible server.

OpenAI, Gemini's OpenAI endpoint, OpenRouter, vLLM, Ollama, LM Studio and
llama.cpp all speak this. One `httpx2` connection pool (openai 3.x moved its
transport to httpx2) sized to the concurrency, so connections are reused
and never exceed the requests in flight; the SDK's own retries off.
"""

from __future__ import annotations

import base64
import json

import httpx2
import openai

from verifier.core.backends import ItemFailed, Reply, Request, Retryable, retry_after
from verifier.core.urls import redact_url, split_query
from verifier.errors import BackendUnavailable

NO_KEY = "capcheck-no-key"  # local servers accept any key; the SDK insists on one


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 6, timeout: float = 120.0):
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self._http = httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            timeout=httpx2.Timeout(timeout, connect=min(timeout, 15.0)),
        )
        url, query = split_query(base_url)  # `?key=` travels as a query on every request, not inside the path
        self._client = openai.AsyncOpenAI(api_key=api_key or NO_KEY, base_url=url, max_retries=0,
                                          timeout=timeout, http_client=self._http, default_query=query or None)
        self._where = redact_url(base_url) or "https://api.openai.com/v1"  # what errors name: no secret in it

    async def ask(self, request: Request) -> Reply:
        # The SDK's generic `post` (its documented way to an endpoint as-is): its auth, headers, base
        # URL, query and typed errors, without `chat.completions.create`'s recursive walk over the
        # request (the base64 image included) and its pydantic response model, which we would only
        # dump to JSON again for the store. 2.5 of 7 ms of client CPU per request (issue 19).
        try:
            response = await self._client.post("/chat/completions", body=chat_body(self.model, request),
                                               cast_to=httpx2.Response)
        except openai.APITimeoutError:
            raise Retryable("timed out", connect=None) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            if isinstance(cause, httpx2.ConnectError):  # nothing listens there (refused, no route, DNS)
                raise Retryable(str(cause) or "connection refused", connect=True) from None
            raise Retryable(f"connection error: {cause}") from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APIError as exc:
            raise ItemFailed(f"unreadable response: {exc}") from None
        raw = response.text
        try:
            body = json.loads(raw)
        except ValueError:  # a 200 whose body is not JSON (a proxy's HTML page)
            raise ItemFailed(f"unreadable response: not JSON ({raw[:80]!r})") from None
        return reply_from_dict(body, raw)

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        message = error_message(exc)
        if status in (401, 403):
            return BackendUnavailable(self._where, f"HTTP {status} ({message}): check the API key in "
                                                   f"${self.api_key_env}")
        if status == 404:
            return BackendUnavailable(self._where, f"HTTP 404 ({message}): is '{self.model}' a model this server "
                                                   f"has, and is the base URL right (it usually ends in /v1)?")
        if status == 400 and ("response_format" in message or "json_schema" in message):
            return BackendUnavailable(self._where, f"HTTP 400 ({message}): this server does not take JSON-schema "
                                                   f"output; use --protocol fixline")
        if status == 429 and _code(exc) == "insufficient_quota":  # billing, not a rate: waiting will not help
            return BackendUnavailable(self._where, f"HTTP 429 ({message}): the account is out of quota")
        if status == 429 or status >= 500 or status in (408, 409):
            return Retryable(f"HTTP {status} ({message})", retry_after(exc.response.headers))
        return ItemFailed(f"HTTP {status} ({message})")

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()


def chat_body(model: str, request: Request) -> dict:
    """The Chat Completions request body: the live request and a batch line send exactly this."""
    data_url = f"data:{request.image.mime};base64,{base64.b64encode(request.image.data).decode('ascii')}"
    body: dict = {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": request.prompt},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]}]}
    if request.schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "observation", "strict": True, "schema": request.schema}}
    return body


def reply_from_body(body: dict) -> Reply:
    """A completion that arrived as JSON (a batch output line) -> the same Reply as a live answer."""
    return reply_from_dict(body, json.dumps(body, ensure_ascii=False))


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    return inner.get("code") if isinstance(inner, dict) else None


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"][:300]
    return str(exc.message)[:300]


def reply_from_dict(body: object, raw: str) -> Reply:
    """A Chat Completions response body (parsed JSON) -> Reply; `raw` is kept as received.
    What is missing or of the wrong type reads as absent (no content: the verdict says so)."""
    body = body if isinstance(body, dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    tokens = (_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")))
    choices = body.get("choices") if isinstance(body.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else None
    if choice is None:
        return Reply(None, None, None, *tokens, raw=raw)
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    content = content if isinstance(content, str) else _join_parts(content)
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    finish = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
    return Reply(content, refusal, finish, *tokens, raw=raw)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _join_parts(content: object) -> str | None:
    """Some servers return content as a list of parts; keep the text ones."""
    if not isinstance(content, list):
        return None
    texts = [p.get("text", "") for p in content if isinstance(p, dict)]
    return "".join(t for t in texts if isinstance(t, str)) or None
