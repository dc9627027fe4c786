"""The Responses API (`POST /v1/responses`, streamed as server-sent events) on the demo server.

The Codex CLI speaks only this wire protocol (0.169 rejects `wire_api =
"chat"`), so this is what lets the real `codex exec` run against the demo
model on loopback. A request is turned into the Chat Completions request it
means (the last user message's text and image, `text.format`'s JSON schema
as `response_format`) and answered by the same `complete()` as the chat
endpoint, faults included; an error status is sent as that HTTP status with
the provider's JSON error body, which codex reads like OpenAI's.

Events sent, the ones codex 0.169 acts on: `response.created`,
`response.output_item.done` (the assistant message) and
`response.completed` (with usage).
"""

from __future__ import annotations

import json
import time


def as_chat_request(request: dict) -> dict:
    """The chat completion request a Responses request means."""
    users = [m for m in request.get("input", []) if isinstance(m, dict) and m.get("role") == "user"]
    parts: list[dict] = []
    content = users[-1].get("content", []) if users else []
    for part in [{"type": "input_text", "text": content}] if isinstance(content, str) else content:
        if part.get("type") == "input_text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.get("image_url", "")}})
    chat = {"model": request.get("model", ""), "messages": [{"role": "user", "content": parts}]}
    fmt = (request.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": fmt.get("name", "answer"),
                                                                          "schema": fmt.get("schema", {})}}
    return chat


def sse_events(completion: dict, number: int) -> bytes:
    """A chat completion as the Responses API's event stream."""
    choice = completion["choices"][0]
    message = choice["message"]
    text = message.get("content") or ""
    if message.get("refusal"):
        content = [{"type": "refusal", "refusal": message["refusal"]}]
    else:
        content = [{"type": "output_text", "text": text, "annotations": []}]
    item = {"type": "message", "id": f"msg_{number}", "role": "assistant", "status": "completed",
            "content": content}
    usage = completion.get("usage") or {}
    response = {"id": f"resp_{number}", "object": "response", "created_at": int(time.time()),
                "model": completion.get("model", ""), "status": "completed", "output": [item],
                "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                          "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": usage.get("completion_tokens", 0),
                          "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": usage.get("total_tokens", 0)}}
    created = {**response, "status": "in_progress", "output": []}
    events = [("response.created", {"response": created}),
              ("response.output_item.done", {"output_index": 0, "item": item}),
              ("response.completed", {"response": response})]
    return b"".join(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
                    for name, data in events)
