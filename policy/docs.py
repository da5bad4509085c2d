"""The generated parts of docs/policy.md: rule table, waivers, IAM-lint ignores.

``python -m policy.docs`` rewrites the marked sections of docs/policy.md; a test keeps them in sync.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from policy.catalog import ALL_RULES, RULES
from policy.iam_lint import IGNORED
from policy.rules import Rule
from policy.waivers import WAIVERS

DOC = Path(__file__).resolve().parent.parent / "docs" / "policy.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short_type(type_: str) -> str:
    return type_.rsplit(":", 1)[-1]


def rules_table() -> str:
    lines = ["| id | severity | references | checks | on |", "|---|---|---|---|---|"]
    for rule in ALL_RULES:
        on = (
            ", ".join(sorted({_short_type(t) for t in rule.resource_types}))
            if isinstance(rule, Rule)
            else "stack"
        )
        refs = ", ".join(rule.references)
        lines.append(f"| `{rule.id}` | {rule.severity} | {refs} | {_cell(rule.description)} | {on} |")
    return "\n".join(lines)


def rule_counts() -> str:
    counts: dict[str, int] = {}
    for rule in ALL_RULES:
        service = rule.id.split("-", 1)[0]
        counts[service] = counts.get(service, 0) + 1
    per_service = ", ".join(f"{service} {count}" for service, count in counts.items())
    stack_rules = len(ALL_RULES) - len(RULES)
    return f"{len(ALL_RULES)} rules ({len(RULES)} per resource, {stack_rules} per stack): {per_service}."


def waivers_table() -> str:
    lines = ["| rule | resources | environments | reason |", "|---|---|---|---|"]
    for waiver in WAIVERS:
        envs = ", ".join(waiver.environments) if waiver.environments else "all"
        scope = f"`{waiver.name_pattern}`" + (" (when the predicate holds)" if waiver.applies else "")
        lines.append(f"| `{waiver.rule_id}` | {scope} | {envs} | {_cell(waiver.reason)} |")
    return "\n".join(lines)


def ignores_table() -> str:
    lines = ["| parliament finding | document kind | for | reason |", "|---|---|---|---|"]
    for ignore in IGNORED:
        where = _cell(ignore.detail_contains)
        lines.append(f"| `{ignore.issue}` | {ignore.kind} | `{where}` | {_cell(ignore.reason)} |")
    return "\n".join(lines)


SECTIONS = {"counts": rule_counts, "rules": rules_table, "waivers": waivers_table, "ignores": ignores_table}


def render_sections(text: str) -> str:
    """``text`` with each ``<!-- name:begin -->...<!-- name:end -->`` section regenerated."""
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(_between(build()), text)
    return text


def _between(generated: str) -> Callable[[re.Match[str]], str]:
    return lambda match: match.group(1) + generated + "\n" + match.group(2)


def main() -> int:
    DOC.write_text(render_sections(DOC.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
