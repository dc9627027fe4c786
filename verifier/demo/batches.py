"""`/v1/files` and `/v1/batches` on the demo server: a batch provider on loopback.

Enough of the OpenAI Batch API for the `openai` SDK to drive it for real:
upload a JSONL file (multipart, purpose `batch`), create a batch, retrieve
it, cancel it, download its output and error files. Each retrieve moves a
batch one step: validating -> in_progress -> finalizing -> completed (the
lines are answered on the way into finalizing, by the same `complete()` as
the live endpoint, so scripted faults turn into failed lines). With
`expire_after` a batch answers that many lines and ends `expired`, the rest
listed in its error file as `batch_expired`, as OpenAI does past the
completion window.
"""

from __future__ import annotations

import json
import threading
import time
from email import policy
from email.parser import BytesParser

STEPS = ("validating", "in_progress", "finalizing", "completed")


class BatchDesk:
    def __init__(self, server) -> None:
        self.server = server  # the demo _Server: take() and complete()
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (name, content)
        self.batches: dict[str, dict] = {}
        self.expire_after: int | None = None
        self.lines_answered = 0  # every batch line ever answered (the "server sees the requests" count)
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, headers, body: bytes) -> tuple[int, bytes, str]:
        parts = [p for p in path.split("?")[0].strip("/").split("/") if p and p != "v1"]
        with self.lock:
            if parts == ["files"] and method == "POST":
                return _json(self._upload(headers.get("Content-Type", ""), body))
            if len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and parts[1] in self.files:
                return 200, self.files[parts[1]][1], "application/octet-stream"
            if parts == ["batches"] and method == "POST":
                return _json(self._create(json.loads(body or b"{}")))
            if len(parts) >= 2 and parts[0] == "batches" and parts[1] in self.batches:
                batch = self.batches[parts[1]]
                if len(parts) == 3 and parts[2] == "cancel" and method == "POST":
                    return _json((200, self._cancel(batch)))
                if len(parts) == 2 and method == "GET":
                    return _json((200, self._advance(batch)))
        return _json((404, {"error": {"message": f"no route {method} {path}", "type": "invalid_request_error"}}))

    def _new_file(self, name: str, content: bytes, purpose: str) -> dict:
        file_id = f"file-{len(self.files) + 1:04d}"
        self.files[file_id] = (name, content)
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    def _upload(self, content_type: str, body: bytes) -> tuple[int, dict]:
        message = BytesParser(policy=policy.default).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields, name, content = {}, "upload.jsonl", b""
        for part in message.iter_parts():
            field = part.get_param("name", header="content-disposition")
            if field == "file":
                name = part.get_filename() or name
                content = part.get_payload(decode=True) or b""
            elif field:
                fields[field] = part.get_content().strip()
        if fields.get("purpose") != "batch":
            return 400, {"error": {"message": "purpose must be batch", "type": "invalid_request_error"}}
        return 200, self._new_file(name, content, "batch")

    def _create(self, request: dict) -> tuple[int, dict]:
        input_id = request.get("input_file_id")
        if input_id not in self.files or request.get("endpoint") != "/v1/chat/completions":
            return 400, {"error": {"message": "unknown input_file_id or endpoint", "type": "invalid_request_error"}}
        lines = [json.loads(ln) for ln in self.files[input_id][1].decode().splitlines() if ln.strip()]
        batch_id = f"batch_{len(self.batches) + 1:04d}"
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
            "input_file_id": input_id, "completion_window": request.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(time.time()), "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": request.get("metadata"), "_lines": lines, "_step": 0}
        return 200, self._public(self.batches[batch_id])

    def _advance(self, batch: dict) -> dict:
        if batch["status"] == "cancelling":
            batch["status"] = "cancelled"
        elif batch["status"] in STEPS[:-1]:
            batch["_step"] += 1
            batch["status"] = STEPS[batch["_step"]]
            if batch["status"] == "finalizing":
                self._answer(batch)
            elif batch["status"] == "completed" and batch.get("_expired"):
                batch["status"] = "expired"
        return self._public(batch)

    def _answer(self, batch: dict) -> None:
        out, err = [], []
        for i, line in enumerate(batch["_lines"]):
            cid = line.get("custom_id")
            if self.expire_after is not None and i >= self.expire_after:
                batch["_expired"] = True
                err.append({"id": f"req_{i}", "custom_id": cid, "response": None, "error": {
                    "code": "batch_expired", "message": "This request could not be executed before the "
                                                        "completion window expired."}})
                continue
            try:
                known, fault = self.server.take(line.get("body") or {})
                status, body, _ = self.server.complete(line.get("body") or {}, known, fault)
            except Exception as exc:  # a line the demo cannot answer fails alone, as on a real server
                status, body = 500, {"error": {"message": f"demo: {exc}", "type": "server_error"}}
            self.lines_answered += 1
            record = {"id": f"req_{i}", "custom_id": cid, "error": None,
                      "response": {"status_code": status, "request_id": f"req_{i}", "body": body}}
            (out if status == 200 else err).append(record)
        batch["request_counts"].update(completed=len(out), failed=len(err))
        batch["_out"], batch["_err"] = out, err

    def _cancel(self, batch: dict) -> dict:
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
        return self._public(batch)

    def _public(self, batch: dict) -> dict:
        if batch["status"] in ("completed", "expired", "cancelled") and batch["output_file_id"] is None:
            for key, records in (("output_file_id", batch.get("_out")), ("error_file_id", batch.get("_err"))):
                if records:
                    data = "".join(json.dumps(r) + "\n" for r in records).encode()
                    batch[key] = self._new_file(f"{batch['id']}_{key}.jsonl", data, "batch_output")["id"]
        return {k: v for k, v in batch.items() if not k.startswith("_")}


def _json(result: tuple[int, dict]) -> tuple[int, bytes, str]:
    status, payload = result
    return status, json.dumps(payload).encode(), "application/json"
