"""Checks on a raw JSON body that run before any parser sees it (docs/api.md, docs/serving.md)."""

from __future__ import annotations

import re

from handlers.common.contracts import MAX_JSON_DEPTH

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_OPENERS = frozenset(b"[{")


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` (JSON or not) nests brackets deeper than ``limit``, outside strings.

    Parameters: ``raw`` the body's bytes; ``limit`` the deepest nesting allowed.
    Returns: True when a parser would have to go deeper than ``limit``.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the usual body: no scan at all
        return False
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw) if b'"' in raw else raw)
    depth = 0
    for byte in brackets:
        depth = depth + 1 if byte in _OPENERS else max(0, depth - 1)
        if depth > limit:
            return True
    return False


FLOAT32_MAX = 3.4028234663852886e38
# Number literals that may pass FLOAT32_MAX: 39+ integer digits, or an exponent of 38 or more.
_BIG_NUMBER = re.compile(
    rb"(?<![\d.])-?(?:\d{39,}(?:\.\d*)?(?:[eE][+-]?\d+)?|\d+(?:\.\d*)?[eE]\+?0*(?:3[89]|[4-9]\d|[1-9]\d{2,}))"
)


def number_beyond_float32(raw: bytes) -> bool:
    """Whether a number literal outside strings is beyond float32 (a model would see inf, and a
    401-digit integer overflows torch). A regex finds the few candidates; ``float`` decides."""
    text = _STRING.sub(b"", raw) if b'"' in raw else raw
    return any(abs(float(match.group())) > FLOAT32_MAX for match in _BIG_NUMBER.finditer(text))
