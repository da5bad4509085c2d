"""Typed training hyperparameters, parsed from SageMaker's all-strings form and CLI arguments.

Precedence: CLI arguments > ``hyperparameters.json`` > the task's defaults > dataclass defaults.
Anything unknown or invalid fails fast with a message naming the parameter and what is allowed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .tasks import TASKS, get_task

# The SageMaker SDK adds its own keys (sagemaker_program, sagemaker_region, ...) to the file.
RESERVED_PREFIX = "sagemaker_"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has a value outside what is allowed."""


@dataclass(frozen=True)
class Hyperparameters:
    task: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    num_workers: int = 0
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    amp: bool = True  # mixed precision; only ever enabled on CUDA

    def as_strings(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


_RULES: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: 0 < v <= 10, "a number in (0, 10]"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "checkpoint_every": (lambda v: v >= 1, "an integer >= 1"),
    "keep_checkpoints": (lambda v: v >= 1, "an integer >= 1"),
    "task": (lambda v: v in TASKS, f"one of {sorted(TASKS)}"),
}


def parse_hyperparameters(raw: Mapping[str, str]) -> Hyperparameters:
    """Build typed hyperparameters from string values (task defaults fill the gaps)."""
    allowed = {f.name: f for f in fields(Hyperparameters)}
    given = {k.replace("-", "_"): v for k, v in raw.items() if not k.startswith(RESERVED_PREFIX)}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise HyperparameterError(f"unknown hyperparameter(s) {unknown}; allowed: {sorted(allowed)}")
    values: dict[str, Any] = {name: _coerce(name, allowed[name].type, text) for name, text in given.items()}
    _check("task", values.get("task", Hyperparameters.task))
    defaults = dict(get_task(values.get("task", Hyperparameters.task)).defaults)
    merged = {**defaults, **values}
    for name, value in merged.items():
        _check(name, value)
    return Hyperparameters(**merged)


def parse_cli(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` / ``--name=value`` pairs (SageMaker's framework containers pass these)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # "--epoch" is a typo
    for f in fields(Hyperparameters):
        parser.add_argument(f"--{f.name}", f"--{f.name.replace('_', '-')}", dest=f.name, default=None)
    known, rest = parser.parse_known_args(list(argv))
    if rest:
        raise HyperparameterError(
            f"unknown argument(s) {rest}; allowed: {sorted('--' + f.name for f in fields(Hyperparameters))}"
        )
    return {name: value for name, value in vars(known).items() if value is not None}


def _coerce(name: str, type_name: Any, text: str) -> Any:
    text = _unquote(str(text).strip())
    kind = str(type_name)
    try:
        if kind == "bool":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        expected = _RULES[name][1] if name in _RULES else kind
        raise HyperparameterError(
            f"hyperparameter {name!r}={text!r} is not a valid {kind}; expected {expected}"
        ) from None
    return text


def _unquote(text: str) -> str:
    # The SageMaker framework estimators JSON-encode string values: "\"digits\"".
    if len(text) >= 2 and text[0] == text[-1] == '"':
        decoded = json.loads(text)
        return decoded if isinstance(decoded, str) else text
    return text


def _check(name: str, value: Any) -> None:
    rule = _RULES.get(name)
    if rule is not None and not rule[0](value):
        raise HyperparameterError(f"hyperparameter {name!r}={value!r} is not allowed; expected {rule[1]}")
