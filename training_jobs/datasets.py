"""Raw datasets, generated offline, shaped like the files a data lake's ``raw/`` prefix holds.

- ``digits``: scikit-learn's bundled 8x8 digit images (CSV: 64 pixel columns + label).
- ``diabetes``: scikit-learn's bundled diabetes progression table, unscaled (CSV).
- ``spam``: seeded synthetic spam/ham messages drawn from word lists (JSON lines).
"""

from __future__ import annotations

import random
from pathlib import Path

from sklearn.datasets import load_diabetes, load_digits

from .tasks import Record, get_task, write_records

SPAM_WORDS = (
    "free winner prize cash claim urgent offer credit loan discount click bonus guaranteed "
    "lottery reward cheap deal exclusive limited congratulations unsubscribe voucher subscribe"
).split()
HAM_WORDS = (
    "meeting lunch tomorrow project report family dinner weekend thanks notes review call "
    "schedule agenda kids birthday office homework draft team coffee soon"
).split()
COMMON_WORDS = (
    "the a to you your we our is are for on this that with now today please get it and of "
    "in me my will can just here there about new time"
).split()


def spam_messages(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` learnable messages: spam leans on spam words, ham on ham words, both on
    common words, with a little cross-vocabulary noise so the task is not a lookup."""
    rng = random.Random(seed)
    messages = []
    for _ in range(count):
        label = "spam" if rng.random() < 0.4 else "ham"
        topical, other = (SPAM_WORDS, HAM_WORDS) if label == "spam" else (HAM_WORDS, SPAM_WORDS)
        words = []
        for _ in range(rng.randint(6, 18)):
            roll = rng.random()
            pool = topical if roll < 0.4 else other if roll < 0.45 else COMMON_WORDS
            words.append(rng.choice(pool))
        text = " ".join(words)
        messages.append((text.capitalize() + rng.choice([".", "!", "?", ""]), label))
    return messages


def _digits_records() -> list[Record]:
    bunch = load_digits()
    return [Record(tuple(float(v) for v in x), int(y)) for x, y in zip(bunch.data, bunch.target, strict=True)]


def _diabetes_records() -> list[Record]:
    bunch = load_diabetes(scaled=False)
    return [
        Record(tuple(float(v) for v in x), float(y)) for x, y in zip(bunch.data, bunch.target, strict=True)
    ]


def _spam_records(count: int, seed: int) -> list[Record]:
    labels = get_task("spam").labels
    return [Record(text, labels.index(label)) for text, label in spam_messages(count, seed)]


def write_raw(task_name: str, directory: Path, *, seed: int = 0, text_count: int = 2000) -> Path:
    """Write the raw file of ``task_name`` into ``directory``; returns its path."""
    task = get_task(task_name)
    if task_name == "digits":
        records = _digits_records()
    elif task_name == "diabetes":
        records = _diabetes_records()
    else:
        records = _spam_records(text_count, seed)
    path = directory / task.raw_file_name
    write_records(task, records, path)
    return path
