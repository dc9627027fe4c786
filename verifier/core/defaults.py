"""verify's default settings, in a module that imports nothing.

`capcheck --help` shows them as option defaults, so the CLI needs them at
import; their modules (prompting, tags) load the policy's pydantic models,
which `--help` has no use for (issue 19). They live here, and those modules
take them from here.
"""

DEFAULT_ASPECTS = ("framing", "view", "facing", "expression")
PROBES = 4  # probe tags per image
MISMATCH_SHARE = 0.5  # this share of a caption's answered tags refuted: it may be another image's caption
