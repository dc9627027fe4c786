"""The built-in generic policy, and which policy a dataset uses.

Without `--policy`, a command uses `DATASET/.capcheck/policy.yaml` when
there is one (what `capcheck init` writes), else the generic policy
(`generic.yaml` beside this module: the Danbooru vocabulary for the
aspects, no trigger, no NL templates), and says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from captions.policy import Policy, load_policy

GENERIC = "generic"
# Where `capcheck init` writes the starter policy, and where it is looked for.
DATASET_POLICY = Path(".capcheck") / "policy.yaml"


def generic_text() -> str:
    return resources.files(__package__).joinpath("generic.yaml").read_text(encoding="utf-8")


def generic_policy() -> Policy:
    """The built-in generic policy (no `source`: it is no file of the user's)."""
    return Policy.model_validate(yaml.safe_load(generic_text()))


@dataclass(frozen=True)
class Chosen:
    policy: Policy
    how: str  # one line for the user: which policy, and why that one


def choose_policy(explicit: str | Path | None, dataset: Path | None) -> Chosen:
    """`--policy` when given; else the dataset's own policy file; else the generic one."""
    if explicit is not None:
        return Chosen(load_policy(explicit), f"policy: {explicit}")
    if dataset is not None:
        own = Path(dataset) / DATASET_POLICY
        if Path(dataset).is_dir() and own.is_file():
            return Chosen(load_policy(own), f"policy: {own} (the dataset's own)")
    return Chosen(generic_policy(), "policy: the built-in generic policy (no --policy, no "
                                    f"{DATASET_POLICY.as_posix()}; `capcheck init` writes one to edit)")
