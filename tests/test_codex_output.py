"""Reading `codex exec` stderr: samples as the real CLI 0.169 printed them against the loopback server."""

from verifier.core.backends.codex_output import CodexOutput

HEADER = """OpenAI Codex v0.169.0
--------
workdir: /tmp/capcheck-codex-x1
model: demo-vision
provider: loop
approval: never
sandbox: read-only
reasoning effort: none
reasoning summaries: none
session id: 01a211e3-4017-7401-aa4f-401401401401
--------
user
Caption: ---
masterpiece, 1girl, 401 model: gpt-4o, unexpected status 401, Quota exceeded
---
"""


def out(tail: str) -> CodexOutput:
    return CodexOutput(HEADER + tail)


def test_success_names_the_model_and_the_tokens():
    o = out("warning: Model metadata for `demo-vision` not found.\ncodex\nOK\ntokens used\n1,105\n")
    assert o.model == "demo-vision" and o.tokens == 1105
    assert o.error_line() is None and not o.fatal  # the caption's "401" and "Quota exceeded" mean nothing


def test_final_error_line_not_the_retry_notices():
    o = out("ERROR: Reconnecting... 1/5\nERROR: Reconnecting... 5/5\n"
            "ERROR: unexpected status 401 Unauthorized: Incorrect API key provided: x., url: http://127.0.0.1:1/v1\n"
            "ERROR: unexpected status 401 Unauthorized: Incorrect API key provided: x., url: http://127.0.0.1:1/v1\n")
    assert o.error_line().startswith("unexpected status 401 Unauthorized: Incorrect API key") and o.fatal


def test_json_error_body_becomes_its_message():
    body = ('{"error": {"message": "The requested model \'demo-vision\' is not supported.", "type": '
            '"invalid_request_error", "code": "model_not_supported", "param": "model"}}')
    o = out(f"ERROR: {body}\nERROR: {body}\n")
    assert o.error_line() == "The requested model 'demo-vision' is not supported. (model_not_supported)" and o.fatal


def test_fatal_and_transient_errors():
    for line in ("Missing environment variable: `CAPCHECK_KEY`.", "Quota exceeded. Check your plan and billing details."):
        assert out(f"ERROR: {line}\n").fatal, line
    for line in ("stream disconnected before completion", "exceeded retry limit, last status: 429 Too Many Requests",
                 "We’re currently experiencing high demand, which may cause temporary errors."):
        o = out(f"ERROR: {line}\n")
        assert not o.fatal and o.error_line() == line, line


def test_waiting_for_network_is_offline_and_a_usage_error_is_read():
    assert out("ERROR: Reconnecting... waiting for network\n").offline
    usage = CodexOutput("error: unexpected argument '--frobnicate' found\n\nUsage: codex exec [OPTIONS] [PROMPT]\n")
    assert usage.error_line() == "unexpected argument '--frobnicate' found" and usage.fatal and usage.model is None
