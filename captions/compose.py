"""Facts -> caption text, by the policy (the seeds' template).

    {quality}, {rating},
    {subject}, {trigger},
    {NL sentences from the per-framing/view templates}
    {kept structure tags},
    {expression, prompt tags that pass through, outfit, view, facing, framing},
    {breast-size tag, where the rule says so},
    {background}
"""

from __future__ import annotations

from captions.aspects import ASPECTS
from captions.caption import compose, render
from captions.facts import Facts, facts_from_prompt, prompt_outfit
from captions.policy import RATINGS, Policy
from captions.tags import is_score_tag, prompt_tags

# Quality and meta words that generation prompts carry and training captions
# must not: the policy's own quality prefix replaces them.
QUALITY_WORDS = frozenset({
    "masterpiece", "best quality", "good quality", "normal quality", "amazing quality", "high quality",
    "very aesthetic", "aesthetic", "absurdres", "highres", "newest", "recent", "very awa",
    "worst quality", "low quality", "bad quality", "general", "questionable", "nsfw",
})


def _phrase(policy: Policy, aspect: str, value: str | None) -> str | None:
    spec = policy.aspect(aspect)
    if value is None or spec is None:
        return None
    return spec.values[value].phrase or value


def nl_sentences(facts: Facts, policy: Policy) -> list[str]:
    """One sentence per NL slot: the first template whose conditions hold
    and whose placeholders all have a value."""
    values = facts.as_dict()
    fill = {aspect: _phrase(policy, aspect, values.get(aspect)) for aspect in ASPECTS}
    fill["trigger"] = policy.trigger or ""
    out = []
    for slot in policy.nl:
        for tpl in slot:
            if tpl.matches(values) and all(fill.get(p) for p in tpl.placeholders()):
                out.append(tpl.text.format(**fill))
                break
    return out


def aspect_tags(facts: Facts, policy: Policy, aspect: str) -> list[str]:
    spec = policy.aspect(aspect)
    value = facts.get(aspect)
    return list(spec.values[value].tags) if spec and value else []


def breast_tags(facts: Facts, tags: list[str], policy: Policy) -> list[str]:
    """`medium breasts` only where the image shows it: always for the
    `always` outfits (nude), and for a revealing outfit when the framing
    shows the body (and the prompt named a body type, if the rule asks)."""
    rule = policy.breasts
    if rule is None or facts.outfit is None:
        return []
    if facts.outfit in rule.always:
        return [rule.tag]
    shows_body = facts.framing in rule.framings and facts.view not in rule.hidden_views
    named_body = not rule.body_keywords or bool(set(tags) & set(rule.body_keywords))
    return [rule.tag] if facts.outfit in rule.revealing and shows_body and named_body else []


def _consumed(facts: Facts, policy: Policy, prompt_outfit: str | None) -> set[str]:
    """Prompt tags that the caption states another way (or must not state)."""
    out = {*policy.quality, *policy.subject, policy.trigger, *policy.absorbed, *policy.kept,
           *policy.background, *RATINGS}
    for aspect in ("framing", "view", "facing", "expression"):
        spec = policy.aspect(aspect)
        for value in spec.values.values() if spec else []:
            out.update(value.tags)
            out.update(value.keywords)
    outfit = policy.aspect("outfit")
    if outfit and prompt_outfit and facts.outfit is None:
        # Hidden by the framing: don't claim what the image does not show.
        out.update(outfit.values[prompt_outfit].keywords)
        out.update(outfit.values[prompt_outfit].tags)
    if policy.breasts:
        out.add(policy.breasts.tag)
    return out


def passthrough(tags: list[str], facts: Facts, policy: Policy, prompt_outfit: str | None = None) -> list[str]:
    """Prompt tags that go into the caption as they are (pose, gaze, outfit details)."""
    consumed = _consumed(facts, policy, prompt_outfit)
    return [
        t for t in tags
        if t and t not in consumed and t not in QUALITY_WORDS and not is_score_tag(t) and not policy.is_dropped(t)
    ]


def compose_caption(facts: Facts, policy: Policy, extras: list[str] = (), body: list[str] = ()) -> str:
    variable = [
        *aspect_tags(facts, policy, "expression"),
        *extras,
        *aspect_tags(facts, policy, "outfit"),
        *aspect_tags(facts, policy, "view"),
        *aspect_tags(facts, policy, "facing"),
        *aspect_tags(facts, policy, "framing"),
    ]
    seen = {*policy.quality, *policy.subject, policy.trigger, *policy.kept, *policy.background, *body}
    variable = [t for i, t in enumerate(variable) if t not in seen and t not in variable[:i]]
    prefix = [*policy.quality, *([facts.rating] if facts.rating else [])]
    sentences = nl_sentences(facts, policy)
    caption = compose([
        prefix,
        [*policy.subject, *([policy.trigger] if policy.trigger else [])],
        " ".join(sentences),
        list(policy.kept),
        variable,
        list(body),
        list(policy.background),
    ])
    return render(caption)


def caption_from_prompt(prompt: str, policy: Policy) -> tuple[Facts, str]:
    """The whole build rule for one sidecar prompt."""
    tags = prompt_tags(prompt)
    facts = facts_from_prompt(tags, policy)
    generated = prompt_outfit(tags, policy)
    extras = passthrough(tags, facts, policy, generated)
    return facts, compose_caption(facts, policy, extras, breast_tags(facts, tags, policy))
