"""Stable split assignment: a record's split is a function of the record's content alone.

Each kept record has a canonical key (its dedupe key: the content the model sees, without the
label). ``sha256(key)`` picks one of 100 buckets: 0-69 train, 70-89 validation, 90-99 test. A
record therefore keeps its split in every dataset version, whatever is added, removed or
reordered around it, so a champion and its challenger are never scored on rows either trained on.
A seed other than 0 salts the hash: a deliberate, complete re-split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

BUCKETS = 100
# Each split owns the buckets below its bound and at or above the previous one.
SPLIT_BOUNDS: tuple[tuple[str, int], ...] = (("train", 70), ("validation", 90), ("test", 100))
SPLIT_NAMES: tuple[str, ...] = tuple(name for name, _ in SPLIT_BOUNDS)
METHOD = "sha256-bucket"


def key_digest(key: str, seed: int = 0) -> bytes:
    """The sha256 of a record's key (salted by ``seed`` when it is not 0)."""
    material = key if seed == 0 else f"{seed}\x00{key}"
    # surrogatepass: a key from undecodable input still hashes, and always to the same bucket.
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).digest()


def split_bucket(key: str, seed: int = 0) -> int:
    """The bucket in ``[0, 100)`` of the record with canonical key ``key``."""
    return _bucket(key_digest(key, seed))


def split_of(key: str, seed: int = 0) -> str:
    """``train``, ``validation`` or ``test``: the split of the record with canonical key ``key``."""
    return _split_name(_bucket(key_digest(key, seed)))


def assign_splits(items: Iterable[T], key: Callable[[T], str], seed: int = 0) -> dict[str, list[T]]:
    """Items by split; within a split they are ordered by key hash, so the input order (which
    files came first, how rows were sorted) changes nothing in the written splits."""
    keyed: dict[str, list[tuple[bytes, T]]] = {name: [] for name in SPLIT_NAMES}
    for item in items:
        digest = key_digest(key(item), seed)
        keyed[_split_name(_bucket(digest))].append((digest, item))
    return {
        name: [item for _, item in sorted(pairs, key=lambda pair: pair[0])] for name, pairs in keyed.items()
    }


def split_fractions() -> dict[str, float]:
    """The expected share of each split (the share of buckets it owns)."""
    lower = 0
    shares = {}
    for name, bound in SPLIT_BOUNDS:
        shares[name] = (bound - lower) / BUCKETS
        lower = bound
    return shares


def split_method(seed: int) -> dict[str, Any]:
    """How the splits were assigned, as the manifest records it."""
    lower, buckets = 0, {}
    for name, bound in SPLIT_BOUNDS:
        buckets[name] = [lower, bound]
        lower = bound
    return {
        "method": METHOD,
        "key": "the record's canonical content (its dedupe key; the label is not part of it)",
        "buckets": BUCKETS,
        "bucket_ranges": buckets,
        "seed": seed,
    }


def _bucket(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _split_name(bucket: int) -> str:
    return next(name for name, bound in SPLIT_BOUNDS if bucket < bound)
