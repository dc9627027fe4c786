"""What the demo server answers to a chat completion: the same for the live endpoint and a batch line.

The answer comes from the demo model's truth table; a fault (`Faults`,
chosen per request by the server) turns it into what providers send when
they misbehave: an HTTP error, a refusal in one of its four forms, an
empty, cut or unreadable answer, fenced or chatty JSON.
"""

from __future__ import annotations

import base64
import json
import time

from verifier.demo.faults import APOLOGY, Faults, Stats
from verifier.demo.model import DemoModel, Known


def unpack(request: dict) -> tuple[str, bytes | None]:
    """The prompt text and the image bytes of the last user message."""
    texts, image = [], None
    for message in request.get("messages", []):
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if url.startswith("data:") and "," in url:
                    image = base64.b64decode(url.split(",", 1)[1])
    return "\n".join(texts), image


def complete(model: DemoModel, faults: Faults, stats: Stats, request: dict, known: Known | None,
             fault: str) -> tuple[int, dict, dict[str, str]]:
    """(HTTP status, body, headers) for a chat completion request: the live
    endpoint and a batch line get the same answer."""
    if fault == "quota":
        message = "You exceeded your current quota, please check your plan and billing details."
        return 429, {"error": {"message": message, "type": "insufficient_quota", "code": "insufficient_quota"}}, {}
    if fault == "no_model":
        return 400, {"error": {"message": f"The requested model '{request.get('model')}' is not supported.",
                               "type": "invalid_request_error", "code": "model_not_supported"}}, {}
    if fault in ("429", "500", "503", "401", "hang", "drop"):  # hang/drop: a batch line fails like a 500
        status = int(fault) if fault[0].isdigit() else 500
        headers = {"Retry-After": f"{faults.retry_after:g}"} if status == 429 else {}
        return status, {"error": {"message": f"demo fault {fault}", "type": "demo"}}, headers
    text, _ = unpack(request)
    key = known.key if known else "?"
    content, refusal, finish = _answer(model, faults, request, text, known, fault)
    with stats.lock:
        if fault in ("ok", "fenced", "chatty"):
            stats.answered[key] += 1
        number = stats.requests
    return 200, {
        "id": f"demo-{number}", "object": "chat.completion", "created": int(time.time()),
        "model": request.get("model", "capcheck-demo"),
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": len(text) // 4 + 258, "completion_tokens": len(content or "") // 4 + 1,
                  "total_tokens": len(text) // 4 + 259 + len(content or "") // 4},
    }, {}


def _answer(model: DemoModel, faults: Faults, request: dict, text: str, known: Known | None,
            fault: str) -> tuple[str | None, str | None, str]:
    """(content, refusal, finish_reason) of a 200 answer: the model's, or the fault's version of it."""
    if fault == "refuse_stop":
        return APOLOGY, None, "stop"
    if fault == "refuse_filter":
        return None, None, "content_filter"
    if fault == "refusal_field":
        return None, "I can't assist with that request.", "stop"
    if fault == "safety":
        return "", None, "SAFETY"
    if fault == "empty":
        return "", None, "stop"
    if fault == "garbage":
        return "The image shows a girl standing on a white background.", None, "stop"
    schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if schema:
        answer = json.dumps(model.answer_schema(known, schema, faults.yes_sayer))
    else:
        answer = model.fixline(known, text, faults.view_under_a)
    if fault == "length":
        return answer[: len(answer) // 2], None, "length"
    style = fault if fault in ("fenced", "chatty") else faults.style
    if style == "fenced":
        answer = f"```json\n{answer}\n```" if schema else f"```\n{answer}\n```"
    elif style == "chatty":
        answer = f"Sure! Here is my answer:\n\n{answer}\n\nLet me know if you need anything else."
    return answer, None, "stop"
