"""Text classification: an EmbeddingBag over a hashed bag of words and bigrams.

Hashing (CRC32, stable across processes unlike ``hash()``) needs no vocabulary file and no
downloaded tokenizer: the config alone reproduces the featurisation at serving time.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .architectures import register
from .base import CLASSIFICATION, InputShapeError, TaskModel

_TOKEN = re.compile(r"[a-z0-9']+")


@dataclass
class TextClassifierConfig:
    num_buckets: int = 2**14
    embedding_dim: int = 32
    ngrams: int = 2
    labels: list[str] = field(default_factory=lambda: ["ham", "spam"])
    max_chars: int = 10_000


def hashed_tokens(text: str, num_buckets: int, ngrams: int) -> list[int]:
    """Bucket ids of the lower-cased words and word n-grams (up to ``ngrams``) of ``text``."""
    words = _TOKEN.findall(text.lower())
    grams = [" ".join(words[i : i + n]) for n in range(1, ngrams + 1) for i in range(len(words) - n + 1)]
    return [zlib.crc32(gram.encode()) % num_buckets for gram in grams]


@register("text-bow", TextClassifierConfig)
class TextClassifier(TaskModel):
    task_kind = CLASSIFICATION

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__(config)
        self.embedding = nn.EmbeddingBag(config.num_buckets, config.embedding_dim, mode="mean")
        self.head = nn.Linear(config.embedding_dim, len(config.labels))

    def forward(self, token_ids: Tensor, offsets: Tensor) -> Tensor:
        return self.head(self.embedding(token_ids, offsets))

    def encode(self, instances: Sequence[Any]) -> tuple[Tensor, ...]:
        ids: list[int] = []
        offsets: list[int] = []
        for index, text in enumerate(instances):
            if not isinstance(text, str):
                raise InputShapeError(f"instance {index}: expected a string, got {type(text).__name__}")
            if len(text) > self.config.max_chars:
                raise InputShapeError(f"instance {index}: longer than {self.config.max_chars} characters")
            offsets.append(len(ids))
            # An empty bag would make EmbeddingBag return zeros; bucket 0 is a stable "no words" token.
            ids.extend(hashed_tokens(text, self.config.num_buckets, self.config.ngrams) or [0])
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)
