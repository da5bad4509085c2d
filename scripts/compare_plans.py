"""Compare the offline plans of a git revision with the working tree's, stack by stack.

    .venv/bin/python scripts/compare_plans.py [--base REV] [--stack dev --stack prod ...]

A refactoring must not change what ``pulumi up`` does. Each resource of the base plan is looked up
by type and logical name in the new plan; it must be there with the same inputs, and either the
same URN or an alias naming its old URN (then the engine moves its state: no replacement). Values
that change with any code edit are masked first: the handlers zip and the training code bundle
hashes, and the archive objects. Lambda handler strings are reported apart, since moving a handler
module changes them on purpose. Exits 1 when anything else differs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")
CODE_BUNDLE = re.compile(r"code/training/[0-9a-f]{16}/")
ARCHIVE = re.compile(r"<pulumi\.asset\.\w+ object at 0x[0-9a-f]+>")
HASHED_INPUTS = {"sourceCodeHash"}


def plan_json(root: Path, stack: str) -> dict[str, Any]:
    """``mlctl plan --json`` of the tree at ``root`` (its own packages first on the path)."""
    result = subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "plan", "--stack", stack, "--json"],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def masked(value: Any) -> Any:
    """``value`` with the code hashes and archive object addresses replaced by placeholders."""
    if isinstance(value, dict):
        return {k: "<code hash>" if k in HASHED_INPUTS else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return ARCHIVE.sub("<archive>", CODE_BUNDLE.sub("code/training/<bundle>/", value))
    return value


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(differences, notes): differences fail the comparison; notes are the expected changes."""
    differences: list[str] = []
    notes: list[str] = []
    before = {(r["type"], r["name"]): r for r in old["resources"]}
    after = {(r["type"], r["name"]): r for r in new["resources"]}
    for key in sorted(before.keys() - after.keys()):
        differences.append(f"gone: {key[0]} {key[1]}")
    for key in sorted(after.keys() - before.keys()):
        (notes if key[0].startswith("mlplatform:") else differences).append(f"new: {key[0]} {key[1]}")
    for key in sorted(before.keys() & after.keys()):
        was, now = before[key], after[key]
        if was["urn"] != now["urn"]:
            if was["urn"] in now.get("aliases", []):
                notes.append(f"moved with an alias to its old URN: {key[1]}")
            elif not key[0].startswith("mlplatform:"):
                differences.append(f"new URN without an alias (would be replaced): {key[1]}")
        inputs_was, inputs_now = masked(was["inputs"]), masked(now["inputs"])
        if key[0] == "aws:lambda/function:Function" and inputs_was.get("handler") != inputs_now.get(
            "handler"
        ):
            notes.append(f"handler of {key[1]}: {inputs_was.pop('handler')} -> {inputs_now.pop('handler')}")
        for name in sorted(set(inputs_was) | set(inputs_now)):
            if inputs_was.get(name) != inputs_now.get(name):
                differences.append(f"{key[1]}.{name}: {inputs_was.get(name)!r} -> {inputs_now.get(name)!r}")
    if masked(old["outputs"]) != masked(new["outputs"]):
        differences.append("stack outputs differ")
    return differences, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare with (default HEAD)")
    parser.add_argument("--stack", action="append", choices=STACKS, help="default: every stack")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=REPO, check=True)
        try:
            for stack in args.stack or STACKS:
                old, new = plan_json(base, stack), plan_json(REPO, stack)
                differences, notes = compare(old, new)
                print(f"{stack}: {len(old['resources'])} resources before, {len(new['resources'])} after")
                for line in notes:
                    print(f"  expected  {line}")
                for line in differences:
                    print(f"  DIFFERS   {line}")
                print(f"  {'identical otherwise' if not differences else f'{len(differences)} differences'}")
                failed = failed or bool(differences)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
