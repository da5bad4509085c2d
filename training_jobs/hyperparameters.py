"""Typed training hyperparameters, parsed from SageMaker's all-strings form and CLI arguments.

Precedence: CLI arguments > ``hyperparameters.json`` > the task's defaults > dataclass defaults.
Anything unknown or invalid fails fast with a message naming the parameter and what is allowed.
Each field carries its own help text, so ``--help`` and the checks cannot drift apart; fields
marked ``identity`` shape the trained weights, and a checkpoint resumes only under the same ones.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from typing import Any, NoReturn

from .tasks import TASKS, get_task

# The SageMaker SDK adds its own keys (sagemaker_program, sagemaker_region, ...) to the file.
RESERVED_PREFIX = "sagemaker_"
REFUSE = "refuse"
RESTART = "restart"
MISMATCH_POLICIES = (REFUSE, RESTART)
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has a value outside what is allowed."""


def _hp(default: Any, help_text: str, *, identity: bool = False) -> Any:
    return field(default=default, metadata={"help": help_text, "identity": identity})


@dataclass(frozen=True)
class Hyperparameters:
    task: str = _hp("digits", "the built-in task to train", identity=True)
    epochs: int = _hp(10, "epochs in total; a resumed run trains up to this many")
    batch_size: int = _hp(64, "examples per step on each process", identity=True)
    learning_rate: float = _hp(1e-3, "AdamW's learning rate", identity=True)
    weight_decay: float = _hp(0.0, "AdamW's weight decay", identity=True)
    seed: int = _hp(42, "seeds Python, NumPy, torch and the order of the data", identity=True)
    num_workers: int = _hp(0, "data-loader worker processes")
    checkpoint_every: int = _hp(1, "write a checkpoint every this many epochs (and after the last)")
    keep_checkpoints: int = _hp(2, "how many of the newest checkpoints to keep")
    amp: bool = _hp(True, "mixed precision; only ever enabled on CUDA", identity=True)
    on_checkpoint_mismatch: str = _hp(
        REFUSE,
        "a checkpoint written by another run (other identity, or none recorded): refuse fails the "
        "job naming what differs; restart deletes that run's checkpoints and trains from scratch",
    )

    def as_strings(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    def identity(self) -> dict[str, Any]:
        """The values that shape the trained weights (not epochs: training longer is a resume)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["identity"]}


_CHOICES: dict[str, list[str]] = {"task": sorted(TASKS), "on_checkpoint_mismatch": list(MISMATCH_POLICIES)}
_RULES: dict[str, tuple[Any, str]] = {
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: 0 < v <= 10, "a number in (0, 10]"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "checkpoint_every": (lambda v: v >= 1, "an integer >= 1"),
    "keep_checkpoints": (lambda v: v >= 1, "an integer >= 1"),
    **{name: (lambda v, c=choices: v in c, f"one of {choices}") for name, choices in _CHOICES.items()},
}
_ALLOWED_BY_TYPE = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "text"}
_METAVARS = {"bool": "BOOL", "int": "INT", "float": "FLOAT", "str": "TEXT"}


def parse_hyperparameters(raw: Mapping[str, str]) -> Hyperparameters:
    """Build typed hyperparameters from string values (task defaults fill the gaps)."""
    allowed = {f.name: f for f in fields(Hyperparameters)}
    given = {k.replace("-", "_"): v for k, v in raw.items() if not _is_reserved(k)}
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


@dataclass(frozen=True)
class CommandLine:
    """What the command line asked for: hyperparameters (strings), or the usage text."""

    hyperparameters: dict[str, str]
    help_text: str | None = None


def parse_cli(argv: Sequence[str], epilog: str = "") -> CommandLine:
    """``--name value`` / ``--name=value`` pairs (SageMaker's framework containers pass these).

    ``-h``/``--help`` asks for the usage (``epilog`` ends it); ``--sagemaker_*`` arguments are
    SageMaker's own and ignored. Any mistake raises a one-line ``HyperparameterError``.
    """
    arguments = list(argv)
    parser = build_parser(epilog)
    _accept_reserved(parser, arguments)
    known, rest = parser.parse_known_args(arguments)
    if known.help:
        return CommandLine({}, parser.format_help())
    if rest:
        raise HyperparameterError(_unknown_arguments_message(rest))
    names = {f.name for f in fields(Hyperparameters)}
    return CommandLine(
        {name: value for name, value in vars(known).items() if name in names and value is not None}
    )


def build_parser(epilog: str = "") -> argparse.ArgumentParser:
    """The parser behind ``--help``: every hyperparameter with its type, default and what is allowed."""
    parser = _OneLineErrorParser(
        add_help=False,
        allow_abbrev=False,  # "--epoch" is a typo, not "--epochs"
        description=(
            "Train a built-in task under the SageMaker training-container contract.\n"
            "Every hyperparameter is '--name value' or '--name=value', spelled with '_' or '-'.\n"
            "A checkpoint is resumed only by the run that wrote it: the same task, model, model\n"
            "config and the hyperparameters marked 'run identity' (epochs may grow)."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this message and exit")
    for hyperparameter in fields(Hyperparameters):
        parser.add_argument(
            *_spellings(hyperparameter.name),
            dest=hyperparameter.name,
            metavar=_metavar(hyperparameter),
            help=_help_line(hyperparameter).replace("%", "%%"),  # argparse %-formats help
        )
    return parser


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints usage and exits; a training job reports one line in its failure file."""

    def error(self, message: str) -> NoReturn:
        raise HyperparameterError(f"{message} (give each hyperparameter as --name value or --name=value)")


def _spellings(name: str) -> list[str]:
    return list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"]))


def _help_line(hyperparameter: Field[Any]) -> str:
    name = hyperparameter.name
    default = _shown_default(hyperparameter.default)
    per_task = [f"{t.name} {_shown_default(t.defaults[name])}" for t in TASKS.values() if name in t.defaults]
    line = f"{hyperparameter.metadata['help']}; allowed: {_allowed(name, str(hyperparameter.type))}"
    line += f"; default: {default}" + (f" (per task: {', '.join(per_task)})" if per_task else "")
    return line + ("; run identity" if hyperparameter.metadata["identity"] else "")


def _metavar(hyperparameter: Field[Any]) -> str:
    choices = _CHOICES.get(hyperparameter.name)
    return "{" + ",".join(choices) + "}" if choices else _METAVARS[str(hyperparameter.type)]


def _shown_default(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _allowed(name: str, kind: str) -> str:
    return _RULES[name][1] if name in _RULES else _ALLOWED_BY_TYPE[kind]


def _is_reserved(key: str) -> bool:
    return key.lstrip("-").replace("-", "_").startswith(RESERVED_PREFIX)


def _accept_reserved(parser: argparse.ArgumentParser, arguments: list[str]) -> None:
    """Let the parser consume ``--sagemaker_* value`` pairs, which are then ignored."""
    reserved = {a.split("=", 1)[0] for a in arguments if a.startswith("--") and _is_reserved(a)}
    for option in sorted(reserved):
        parser.add_argument(option, dest=f"reserved:{option}", help=argparse.SUPPRESS)


def _unknown_arguments_message(rest: Sequence[str]) -> str:
    options = [a.split("=", 1)[0] for a in rest if a.startswith("-")]
    allowed = ", ".join(f"--{f.name}" for f in sorted(fields(Hyperparameters), key=lambda f: f.name))
    return f"unknown argument(s) {options or list(rest)}; allowed: {allowed} (or '-' for '_'), -h/--help"


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
        raise HyperparameterError(
            f"hyperparameter {name!r}={text!r} is not a valid {kind}; expected {_allowed(name, kind)}"
        ) from None
    return text


def _unquote(text: str) -> str:
    # The SageMaker framework estimators JSON-encode string values: "\"digits\"".
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:  # quotes that are part of the value, not JSON
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def _check(name: str, value: Any) -> None:
    rule = _RULES.get(name)
    if rule is not None and not rule[0](value):
        raise HyperparameterError(f"hyperparameter {name!r}={value!r} is not allowed; expected {rule[1]}")
