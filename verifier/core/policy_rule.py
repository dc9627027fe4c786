"""Which caption policy a command uses: one rule for every command.

1. `--policy POLICY.yaml`, when given;
2. else the policy file the last verify of this dataset used (recorded in
   its store), so that `apply`, `route`, `ingest`, `review` and a `run`
   without `--policy` read captions by the policy their report was made
   with; a recorded file that is gone is an error, never a silent switch
   to another policy (that would rewrite captions by other rules);
3. else the dataset's own `DATASET/.capcheck/policy.yaml` (`capcheck init`);
4. else the built-in generic policy.

Steps 3 and 4 are `captions.generic.choose_policy` (captions/ knows no
store). Every command prints the `how` line, naming the policy and why.
Before, `verify`/`run` skipped step 2 and `apply`/`route`/`ingest`/`review`
took it, so one dataset could be read by two policies in one session.
"""

from __future__ import annotations

import os
from pathlib import Path

from captions.errors import PolicyError
from captions.generic import Chosen, choose_policy
from captions.policy import load_policy
from verifier.core.store import DB_NAME, STATE_DIR, Store


def choose(explicit: str | Path | None, root: Path | None, store: Store | None = None) -> Chosen:
    """The policy by the rule above; `store`: the dataset's, when the caller has it open."""
    if explicit is not None:
        return Chosen(load_policy(explicit), f"policy: {explicit} (--policy)")
    recorded = _recorded(root, store)
    if recorded:
        shown = shown_path(recorded)
        if not Path(recorded).is_file():
            raise PolicyError(shown, "the policy the last verify of this dataset used is gone: restore it, or pass "
                                     "--policy POLICY.yaml")
        return Chosen(load_policy(recorded), f"policy: {shown} (the one the last verify of this dataset used)")
    return choose_policy(None, root)


def _recorded(root: Path | None, store: Store | None) -> str | None:
    if store is not None:
        return store.latest_args("verify").get("policy")
    if root is None or not (Path(root) / STATE_DIR / DB_NAME).is_file():
        return None  # never verified: nothing to read, and no store is created just to look
    with Store(root) as opened:
        return opened.latest_args("verify").get("policy")


def shown_path(path: str | Path) -> str:
    """`path` relative to the working folder when it lies inside it (as a person typed it), else whole."""
    absolute = Path(path)
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return os.fspath(absolute)
