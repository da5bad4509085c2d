"""The rule table: pure functions over a resource's planned properties (camelCase, as ``args.props``).

A :class:`Rule` looks at one resource; a :class:`StackRule` looks at every resource of the stack
(for links between resources, e.g. each bucket has a public access block resource pointing at it).
The same functions run in ``pulumi preview --policy-pack policy`` and, over the offline plan of
every example stack, in the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["mandatory", "advisory"]
MANDATORY: Severity = "mandatory"
ADVISORY: Severity = "advisory"
# Reference for rules with no public equivalent: the promise they check in RELIABILITY.md.
OURS = "ml-platform RELIABILITY.md"


@dataclass(frozen=True)
class Context:
    """What a rule may know besides the properties: the resource and the environment of its stack."""

    type: str = ""
    name: str = ""
    urn: str = ""
    environment: str = "dev"

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"


@dataclass(frozen=True)
class Resource:
    """One resource as the stack rules see it."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]


Check = Callable[[Mapping[str, Any], Context], "str | None"]
StackCheck = Callable[[Sequence[Resource], Context], "list[tuple[Resource, str]]"]


@dataclass(frozen=True)
class Rule:
    """A rule on one resource: ``check`` returns the violation message, or None when it passes."""

    id: str
    description: str
    severity: Severity
    references: tuple[str, ...]
    resource_types: tuple[str, ...]
    check: Check

    def applies_to(self, type_: str) -> bool:
        return type_ in self.resource_types


@dataclass(frozen=True)
class StackRule:
    """A rule over the whole stack: ``check`` returns (offending resource, message) pairs."""

    id: str
    description: str
    severity: Severity
    references: tuple[str, ...]
    check: StackCheck


# ---------------------------------------------------------------- helpers shared by the modules


def as_document(value: Any) -> Mapping[str, Any] | None:
    """A policy document given as a JSON string or a dict; None when absent or unreadable."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def statements(document: Mapping[str, Any] | None) -> Iterator[Mapping[str, Any]]:
    if document is None:
        return
    for statement in as_list(document.get("Statement")):
        if isinstance(statement, Mapping):
            yield statement


def principals(statement: Mapping[str, Any]) -> list[str]:
    """Every principal of a statement, flattened: ``"*"``, account ARNs, service names."""
    principal = statement.get("Principal")
    if principal is None:
        return []
    if isinstance(principal, str):
        return [principal]
    if isinstance(principal, Mapping):
        return [str(value) for values in principal.values() for value in as_list(values)]
    return [str(value) for value in as_list(principal)]


def is_public_allow(statement: Mapping[str, Any]) -> bool:
    """An Allow to everyone (``*``) that no condition narrows."""
    return (
        statement.get("Effect") == "Allow" and "*" in principals(statement) and not statement.get("Condition")
    )


def has_tls_only_deny(document: Mapping[str, Any] | None) -> bool:
    """A Deny statement on ``aws:SecureTransport = false``."""
    for statement in statements(document):
        if statement.get("Effect") != "Deny":
            continue
        condition = statement.get("Condition")
        if not isinstance(condition, Mapping):
            continue
        for operator in condition.values():
            if (
                isinstance(operator, Mapping)
                and str(operator.get("aws:SecureTransport", "")).lower() == "false"
            ):
                return True
    return False


def number(value: Any) -> float | None:
    """Pulumi hands numbers over as floats; strings of digits count too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def dig(props: Mapping[str, Any], *path: str) -> Any:
    """``props[a][b]...``, None where a step is missing (or a one-element list, as the provider nests)."""
    value: Any = props
    for key in path:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
