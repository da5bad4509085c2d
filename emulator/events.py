"""A local EventBridge default bus: an event put on it reaches the Lambda targets of the rules it
matches, as AWS delivers it (docs/local-platform.md).

The rules and targets are the ones the Pulumi program declares, created in moto's events backend by
``emulator.provision``; matching is moto's own (``Rule.event_pattern``). moto delivers to logs,
SQS and other buses but not to Lambda functions, so Lambda targets are handed to ``deliver``
(the local Lambda runtime's asynchronous invoke, :mod:`emulator.lambdas`). Services the emulator
runs put their events here (SageMaker's, see :mod:`emulator.sagemaker_events`); ``PutEvents``
against the emulator reaches Lambda targets too (:func:`extend_moto`).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_BUS = "default"
ENABLED = "ENABLED"
# What a target may say about the input it gets; none of the stack's Lambda targets uses them.
INPUT_SETTINGS = ("Input", "InputPath", "InputTransformer")

Event = dict[str, Any]
Deliver = Callable[[str, Event], Any]  # (function ARN, event)


def new_event(
    *, source: str, detail_type: str, resources: Sequence[str], detail: Mapping[str, Any], arn: str
) -> Event:
    """An EventBridge event in the envelope AWS services send; account and region from ``arn``
    (the resource the event is about)."""
    parts = arn.split(":")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": parts[4] if len(parts) > 4 else "",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": parts[3] if len(parts) > 3 else "",
        "resources": list(resources),
        "detail": dict(detail),
    }


def is_lambda_function(arn: str) -> bool:
    return arn.startswith("arn:") and arn.split(":")[2:3] == ["lambda"] and ":function:" in arn


def events_backend(account_id: str, region: str) -> Any:
    """moto's in-process events backend of ``account_id`` / ``region``."""
    from moto.events.models import events_backends  # noqa: PLC0415 - moto is local-only

    return events_backends[account_id][region]


class LocalEventBus:
    """The default bus of the events backend ``backend()`` returns; ``deliver(function_arn, event)``
    invokes a Lambda function asynchronously (it must return at once)."""

    def __init__(self, backend: Callable[[], Any], deliver: Deliver) -> None:
        self._backend = backend
        self._deliver = deliver

    def put(self, event: Event) -> list[str]:
        """Deliver ``event`` to the Lambda targets of every enabled rule it matches; returns the
        names of the rules it matched. Never raises: the call that caused the event must not fail
        for its delivery (it is asynchronous in AWS)."""
        matched = []
        try:
            for rule in self._rules():
                if self.matches(rule, event):
                    matched.append(rule.name)
                    self.deliver(rule, event)
        except Exception:
            logger.exception("event %s %s was not delivered", event.get("id"), event.get("detail-type"))
        resources = ", ".join(event.get("resources", []))
        logger.info(
            "event %s %s (%s) matched %s",
            event.get("id"),
            event.get("detail-type"),
            resources,
            matched or "none",
        )
        return matched

    @staticmethod
    def matches(rule: Any, event: Event) -> bool:
        """Whether an enabled rule with an event pattern matches ``event``. A scheduled rule has no
        pattern (moto's empty pattern would match everything): events never trigger it."""
        pattern = rule.event_pattern
        return rule.state == ENABLED and bool(pattern.get_pattern()) and bool(pattern.matches_event(event))

    def deliver(self, rule: Any, event: Event) -> None:
        """Hand ``event`` to each Lambda target of ``rule``; other targets are left to moto."""
        for target in rule.targets:
            arn = str(target["Arn"])
            if not is_lambda_function(arn):
                continue
            if any(setting in target for setting in INPUT_SETTINGS):
                logger.warning("rule %s target %s: input transformation is not emulated", rule.name, arn)
            self._deliver(arn, copy.deepcopy(event))

    def _rules(self) -> list[Any]:
        return list(self._backend().event_buses[DEFAULT_BUS].rules.values())


def extend_moto(bus: LocalEventBus) -> Callable[[], None]:
    """Make moto's ``PutEvents`` hand Lambda targets to ``bus`` (moto raises NotImplementedError
    for them) and skip scheduled rules (moto's empty pattern matches every event); other targets
    stay moto's. Returns the function that undoes it."""
    from moto.events.models import Rule  # noqa: PLC0415 - moto is local-only

    if getattr(Rule, "_mlp_events", False):
        return lambda: None
    original = Rule.send_to_targets

    def send_to_targets(self: Any, event: Event, transform_input: bool = True) -> None:
        if not bus.matches(self, event):
            return
        bus.deliver(self, _as_delivered(event))
        others = [target for target in self.targets if not is_lambda_function(str(target["Arn"]))]
        if others:
            rest = copy.copy(self)
            rest.targets = others
            try:
                original(rest, event, transform_input)  # type: ignore[arg-type]
            except NotImplementedError:  # a target moto cannot deliver to (a pipeline): held, not run
                logger.info("rule %s: targets %s are not emulated", self.name, [t["Arn"] for t in others])

    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign, assignment]
    Rule._mlp_events = True  # type: ignore[attr-defined]

    def undo() -> None:
        Rule.send_to_targets = original  # type: ignore[method-assign]
        del Rule._mlp_events  # type: ignore[attr-defined]

    return undo


def _as_delivered(event: Event) -> Event:
    """moto's event message as EventBridge delivers it: ``time`` as ISO 8601, not epoch seconds."""
    delivered = {key: value for key, value in event.items() if key != "ingestion-time"}
    if isinstance(delivered.get("time"), int | float):
        delivered["time"] = datetime.fromtimestamp(delivered["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return delivered
