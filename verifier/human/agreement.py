"""agreement: how far the model agrees with the person, per aspect.

The person's answers come from `ingest`; the model's from its stored
observations of the same images (by content hash). Per aspect: a confusion
matrix (rows: the person, columns: the model), accuracy, Cohen's kappa, and
the images they disagree on. The article's "Codex's strict Danbooru
judgement vs visual impression", made measurable.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from verifier.core.observation import CANNOT, TAG_ANSWERS
from verifier.core.store import Store
from verifier.core.tags import TAGS
from verifier.human.apply import TAG_PREFIX


class Disagreement(NamedTuple):
    image: str  # where the person's answer was read (relative to the dataset)
    person: str
    model: str
    image_sha: str  # names its thumbnail in the reports


@dataclass
class Agreement:
    aspect: str
    backend: str
    model: str
    labels: list[str]
    matrix: dict[tuple[str, str], int]  # (person, model) -> n
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(self.matrix.values())

    @property
    def accuracy(self) -> float:
        return sum(v for (a, b), v in self.matrix.items() if a == b) / self.n if self.n else 0.0

    @property
    def kappa(self) -> float:
        """Cohen's kappa: agreement beyond what the two marginals give by chance."""
        n = self.n
        if not n:
            return 0.0
        person = Counter({label: 0 for label in self.labels})
        model = Counter({label: 0 for label in self.labels})
        for (a, b), v in self.matrix.items():
            person[a] += v
            model[b] += v
        chance = sum(person[label] * model[label] for label in self.labels) / (n * n)
        if chance >= 1.0:
            return 1.0 if self.accuracy == 1.0 else 0.0
        return (self.accuracy - chance) / (1 - chance)

    def as_dict(self) -> dict:
        return {"aspect": self.aspect, "backend": self.backend, "model": self.model, "n": self.n,
                "accuracy": self.accuracy, "kappa": self.kappa, "labels": self.labels,
                "matrix": [[self.matrix.get((a, b), 0) for b in self.labels] for a in self.labels],
                "disagreements": [{"image": d.image, "person": d.person, "model": d.model}
                                  for d in self.disagreements]}


def latest_model(store: Store) -> tuple[str, str] | None:
    args = store.latest_args("verify")
    return (args.get("backend"), args.get("model")) if args else None


def agreement(store: Store, aspect: str, vocabulary: list[str], backend: str | None = None,
              model: str | None = None) -> Agreement | None:
    """None when the person has answered nothing for `aspect`."""
    people = store.human(aspect)
    if not people:
        return None
    if backend is None or model is None:
        found = latest_model(store)
        if found is None:
            return None
        backend, model = backend or found[0], model or found[1]
    said: dict[str, str] = {}
    for row in store.db.execute(
            "SELECT image_sha, observation FROM verdicts WHERE backend=? AND model=? AND observation IS NOT NULL "
            "ORDER BY id", (backend, model)):
        observation = json.loads(row["observation"])
        if aspect.startswith(TAG_PREFIX):  # one tag of the tags audit: present / absent / cannot determine
            answer = (observation.get(TAGS) or {}).get(aspect[len(TAG_PREFIX):])
            if answer is not None:
                said[row["image_sha"]] = answer
            continue
        value = (observation.get(aspect) or {})
        if "value" in value:
            said[row["image_sha"]] = value["value"] or CANNOT
    matrix: Counter = Counter()
    out = Agreement(aspect, backend, model, [], {})
    for row in people:
        if row["image_sha"] not in said:
            continue
        person, machine = row["value"], said[row["image_sha"]]
        matrix[(person, machine)] += 1
        if person != machine:
            out.disagreements.append(Disagreement(row["image"], person, machine, row["image_sha"]))
    used = {label for pair in matrix for label in pair}
    out.labels = [v for v in vocabulary if v in used] + sorted(used - set(vocabulary))
    out.matrix = dict(matrix)
    return out


def all_agreements(store: Store, policy, aspects: list[str] | None = None, backend: str | None = None,
                   model: str | None = None) -> list[Agreement]:
    """Model vs person on every aspect (of `aspects`, default all the policy's) a person has answered;
    with the tags audit (`tags` among `aspects`, or by default), per tag a person answered."""
    out = []
    for aspect in aspects or [name for name, _ in policy.aspects.items()]:
        spec = policy.aspect(aspect)
        found = agreement(store, aspect, list(spec.values), backend, model) if spec is not None else None
        if found is not None and found.n:
            out.append(found)
    if aspects is None or TAGS in aspects:
        tagged = sorted({row["aspect"] for row in store.human() if row["aspect"].startswith(TAG_PREFIX)})
        for key in tagged:
            found = agreement(store, key, list(TAG_ANSWERS), backend, model)
            if found is not None and found.n:
                out.append(found)
    return out
