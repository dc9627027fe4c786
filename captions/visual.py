"""Which caption tokens are visual facts a model can check against the image.

Pure rules over plain data. The tags audit asks a vision model about a tag
"by its Danbooru meaning"; a token with no visual meaning gets "absent"
and would then be removed, so a trigger word (`kanachan`) once left 15 of
19 captions of a character LoRA without it. What is asked is decided from
a vocabulary, never assumed: a tag is asked only when it is a Danbooru
general tag (the user's CSV, or the one capcheck ships) and not one of the
general tags below that say nothing the image shows as a fact.

`not_asked` says why a token is left out, in a word the summary prints.
"""

from __future__ import annotations

import re

from captions.policy import RATINGS, Policy
from captions.tags import is_score_tag
from captions.vocab import GENERAL, Vocabulary

TRIGGER, QUALITY, RATING, COUNT, POLICY = "trigger", "quality", "rating", "count", "policy"
NOT_VISUAL, NAME, UNKNOWN, CAP = "not visual", "a name", "not a Danbooru tag", "over the cap"
# Each reason as the summary explains it once.
WHY = {
    TRIGGER: "the character's trigger word: no image shows it",
    QUALITY: "quality, score, year or file tags: about the picture's making, not its content",
    RATING: "rating tags: a judgement, not a thing in the image",
    COUNT: "count tags (1girl, solo): the policy's subject, not asked one by one",
    POLICY: "the policy's subject, absorbed, dropped or unchecked tags",
    NOT_VISUAL: "general tags that are no visual fact (names written on the image, costume provenance, relations)",
    NAME: "character, artist, copyright or meta names",
    UNKNOWN: "not a Danbooru tag (made up or misspelt: lint's business)",
    CAP: "past the cap on tags asked per image",
}

QUALITY_TAGS = frozenset({
    "masterpiece", "best quality", "high quality", "good quality", "normal quality", "low quality", "worst quality",
    "amazing quality", "bad quality", "very aesthetic", "aesthetic", "displeasing", "very displeasing",
    "absurdres", "highres", "lowres", "incredibly absurdres", "newest", "recent", "old", "oldest", "early", "mid",
    "late", "official art", "commentary", "commentary request", "translated",
    "source anime", "source cartoon", "source furry", "source pony",
    "score 9", "jpeg artifacts",
    "bad anatomy", "bad hands", "worst aesthetic",
})
RATING_TAGS = frozenset(RATINGS) | {"general", "questionable", "nsfw", "sfw", "rating safe", "rating sensitive",
                         "rating general", "rating questionable", "rating explicit"}
_YEAR = re.compile(r"^(?:year )?\d{4}s?$")
_COUNT = re.compile(r"^(?:\d+\+?|multiple) ?(?:girls?|boys?|others?|people|persons?)$")
_SYMBOL = re.compile(r"[?!.…]+")  # `?`, `...`: a mark drawn on the picture, not a fact to confirm
COUNT_TAGS = frozenset({"solo", "solo focus", "male focus", "female focus", "no humans", "everyone", "group"})
# Danbooru general tags that are no fact an image shows (as the audit asks about facts): text and names
# written on the picture, where a costume or look comes from, relations between people, drawing events.
NOT_VISUAL_TAGS = frozenset({
    "artist name", "character name", "copyright name", "signature", "watermark", "dated", "twitter username",
    "patreon username", "pixiv username", "web address", "username", "logo", "english text", "japanese text",
    "chinese text", "korean text", "translation request", "text focus", "sample watermark", "artist logo",
    "virtual youtuber", "alternate costume", "official alternate costume", "alternate hairstyle",
    "official alternate hairstyle", "alternate hair color", "alternate eye color", "alternate breast size",
    "alternate hair length", "adapted costume", "cosplay", "parody", "crossover", "genderswap", "genderswap (mtf)",
    "genderswap (ftm)", "aged down", "aged up", "personification", "kemonomimi mode", "dual persona", "meme",
    "one-hour drawing challenge", "happy birthday", "character request", "original", "fanart", "fan art",
    "siblings", "sisters", "brothers", "twins", "couple", "age difference", "mother and daughter",
    "father and daughter", "mother and son", "father and son", "friends", "rivals", "multiple persona",
    "time paradox", "self-upload", "third-party edit", "md5 mismatch", "revision", "variant set",
})


def is_count(tag: str) -> bool:
    return tag in COUNT_TAGS or bool(_COUNT.match(tag))


def is_quality(tag: str) -> bool:
    return tag in QUALITY_TAGS or is_score_tag(tag) or bool(_YEAR.match(tag))


def not_asked(tag: str, policy: Policy, vocab: Vocabulary, trigger: str | None = None) -> str | None:
    """Why `tag` is never asked about (a key of WHY), or None: a visual tag the model may check.
    `trigger` is the guessed one when the policy names none (`guess_trigger`)."""
    if tag and tag in {policy.trigger, trigger}:
        return TRIGGER
    if tag in RATING_TAGS:
        return RATING
    if tag in policy.quality or is_quality(tag):
        return QUALITY
    if is_count(tag):
        return COUNT
    if tag in policy.subject or tag in policy.absorbed or tag in policy.unchecked or policy.is_dropped(tag):
        return POLICY
    kind = vocab.kind(tag)
    if kind is None and (canonical := vocab.canonical(tag)):
        kind, tag = vocab.kind(canonical), canonical
    if kind is None:
        return UNKNOWN
    if kind != GENERAL:
        return NAME  # character features (hair, eyes) are general tags; names are not
    if tag in NOT_VISUAL_TAGS or _SYMBOL.fullmatch(tag):
        return NOT_VISUAL
    return None
