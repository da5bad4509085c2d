"""The architectures by name, so configs and saved models refer to them by string."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .base import TaskModel


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type[Any]
    model_cls: type[TaskModel]

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        """Rebuild a config from JSON, refusing keys the dataclass does not know."""
        allowed = {f.name for f in fields(self.config_cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown {self.name} config keys {unknown}; allowed: {sorted(allowed)}")
        return self.config_cls(**data)


_ARCHITECTURES: dict[str, ModelSpec] = {}


def register(name: str, config_cls: type[Any]) -> Callable[[type[TaskModel]], type[TaskModel]]:
    """Class decorator: make an architecture buildable as ``build(name, config)``."""

    def decorator(model_cls: type[TaskModel]) -> type[TaskModel]:
        if name in _ARCHITECTURES:
            raise ValueError(f"model {name!r} is already registered")
        model_cls.architecture_name = name
        _ARCHITECTURES[name] = ModelSpec(name, config_cls, model_cls)
        return model_cls

    return decorator


def get(name: str) -> ModelSpec:
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {names()}") from None


def names() -> list[str]:
    return sorted(_ARCHITECTURES)


def build(name: str, config: Any) -> TaskModel:
    """Instantiate the architecture registered as ``name``."""
    spec = get(name)
    if not isinstance(config, spec.config_cls):
        raise TypeError(f"{name} needs a {spec.config_cls.__name__}, got {type(config).__name__}")
    return spec.model_cls(config)
