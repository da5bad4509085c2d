"""docs/policy.md carries the generated rule table, waivers and ignores, up to date."""

from __future__ import annotations

from policy import docs
from policy.catalog import ALL_RULES
from policy.waivers import WAIVERS


def test_docs_sections_are_up_to_date():
    # GIVEN docs/policy.md as committed
    text = docs.DOC.read_text()
    # WHEN its generated sections are rendered again from the rule table
    # THEN nothing changes (run `python -m policy.docs` after editing rules or waivers)
    assert docs.render_sections(text) == text


def test_docs_list_every_rule_and_waiver():
    # GIVEN docs/policy.md
    text = docs.DOC.read_text()
    # THEN every rule id and every waiver reason appears, and how to run the pack is explained
    assert all(f"`{rule.id}`" in text for rule in ALL_RULES)
    assert all(waiver.reason.split(";")[0] in text for waiver in WAIVERS)
    assert "pulumi preview --stack dev --policy-pack policy" in text
