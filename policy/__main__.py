"""Entry point of ``pulumi preview --policy-pack policy``: the pack built from the rule table."""

import sys
from pathlib import Path

# Pulumi runs this file from the policy folder; the rules import as the ``policy`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policy.pack import build_pack  # noqa: E402

build_pack()
