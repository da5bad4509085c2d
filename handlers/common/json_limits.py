"""A depth limit on a raw JSON body, checked before any parser sees it (docs/serving.md, docs/api.md).

Recursive parsers (``json``, and a team's own ``input_fn``) crash on deep nesting instead of
refusing it; a body that nests deeper than any real request is refused first, for the cost of two
byte counts on an ordinary body.
"""

from __future__ import annotations

import re
from itertools import accumulate

from handlers.common.contracts import MAX_JSON_DEPTH

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opener +1, closer -1 (as signed bytes)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` (JSON or not) nests brackets deeper than ``limit`` outside its strings.

    Parameters: ``raw`` the body's bytes; ``limit`` the deepest nesting allowed.
    Returns: True when a parser would have to go deeper than ``limit``.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the usual body: no scan at all
        return False
    text = _STRING.sub(b"", raw) if b'"' in raw else raw
    steps = text.translate(None, _NOT_BRACKETS).translate(_STEP)
    return max(accumulate(1 if step == 1 else -1 for step in steps), default=0) > limit
