"""A `vllm run-batch`-shaped stand-in: the same command line and file formats.

    python vllm_run_batch.py -i IN.jsonl -o OUT.jsonl --model NAME --url DEMO_SERVER_URL

Each input line is checked the way vLLM's `BatchRequestInput` checks it
(custom_id, method POST, url /v1/chat/completions, a chat body for the
served model, nothing else), then answered by the demo server's chat
endpoint, as vLLM's engine would answer it, and written as vLLM writes
its output: `{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}`. A malformed input line stops it with
exit 1, as vLLM does.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid

FIELDS = {"custom_id", "method", "url", "body"}


def check(number: int, line: dict, model: str) -> None:
    def bad(why: str) -> None:
        sys.stderr.write(f"ValueError: line {number}: {why}\n")
        sys.exit(1)

    if set(line) != FIELDS:
        bad(f"fields {sorted(line)} are not {sorted(FIELDS)}")
    if not isinstance(line["custom_id"], str) or not line["custom_id"]:
        bad("custom_id must be a non-empty string")
    if line["method"] != "POST" or line["url"] != "/v1/chat/completions":
        bad(f"unsupported {line['method']} {line['url']}")
    body = line["body"]
    if body.get("model") != model:
        bad(f"model {body.get('model')!r} is not the served model {model!r}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all("role" in m and "content" in m for m in messages):
        bad("body.messages must be a list of chat messages")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--input-file", required=True)
    ap.add_argument("-o", "--output-file", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--url", required=True, help="the demo server standing in for vLLM's engine")
    args = ap.parse_args()
    with open(args.input_file, encoding="utf-8") as fh:
        lines = [json.loads(raw) for raw in fh if raw.strip()]
    for number, line in enumerate(lines, start=1):
        check(number, line, args.model)
    with open(args.output_file, "w", encoding="utf-8") as out:
        for line in lines:
            request = urllib.request.Request(args.url + "/chat/completions", json.dumps(line["body"]).encode(),
                                             {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=60) as fh:
                    status, body = fh.status, json.load(fh)
            except urllib.error.HTTPError as exc:
                status, body = exc.code, json.load(exc)
            out.write(json.dumps({"id": f"vllm-{uuid.uuid4().hex}", "custom_id": line["custom_id"],
                                  "response": {"status_code": status, "request_id": f"vllm-batch-{uuid.uuid4().hex}",
                                               "body": body}, "error": None}) + "\n")


if __name__ == "__main__":
    main()
