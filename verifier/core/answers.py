"""A model's reply -> a verdict, by protocol.

The order matters, because a refusal must never pass for an answer:
1. the provider said it refused (`message.refusal`) or filtered the answer
   (`finish_reason` content_filter, or an upper-case reason such as SAFETY),
   or the answer is empty: `refused`;
2. the answer parses (observe JSON / fixline line): compare with the caption
   (`judge`), which is `refused` if a claimed aspect could not be determined;
3. it does not parse: apology text is `refused`; an answer cut off by the
   token limit or plain garbage is `error` (re-asked on the next run).
"""

from __future__ import annotations

from captions.facts import Facts
from captions.policy import Policy
from verifier.core.backends import Reply
from verifier.core.fixline import parse_fixline
from verifier.core.observation import Observation, ObservationError, parse_observe
from verifier.core.prompting import OBSERVE, PromptSpec
from verifier.core.verdict import ERROR, REFUSED, TagClaims, Verdict, checked_claims, filtered_reason, is_apology, judge


def read_observation(content: str, spec: PromptSpec, policy: Policy, claims: Facts,
                     asked: list[str] | None = None) -> Observation:
    aspects = list(spec.aspects)
    if spec.protocol == OBSERVE:
        return parse_observe(content, policy, aspects, asked)
    return parse_fixline(content, policy, aspects, claims)


def interpret(reply: Reply, spec: PromptSpec, policy: Policy, claims: Facts, tags: TagClaims | None = None) -> Verdict:
    """`tags`: the tags audit's question for this image (None without the audit)."""
    checked = checked_claims(claims, spec.aspects, tags)
    asked = [*tags.tags, *tags.probes] if tags is not None else None
    why = filtered_reason(reply.refusal, reply.finish_reason, reply.content)
    if why is not None:
        return Verdict(REFUSED, reason=why, claims=checked)
    content = reply.content or ""
    try:
        observation = read_observation(content, spec, policy, claims, asked)
    except ObservationError as exc:
        if is_apology(content):
            return Verdict(REFUSED, reason=f"declined: {_first_line(content)}", claims=checked)
        if (reply.finish_reason or "").lower() in ("length", "max_tokens"):
            return Verdict(ERROR, reason=f"answer cut off by the token limit: {exc}", claims=checked)
        return Verdict(ERROR, reason=f"unreadable answer ({exc}): {_first_line(content)}", claims=checked)
    return judge(observation, claims, list(spec.aspects), tags)


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    return line[:160]
