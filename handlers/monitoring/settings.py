"""The drift monitor's settings: the environment the Pulumi program gives it, read and checked.

``infra/monitoring.py`` sets these variables and the handler reads them, both through the names here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.common.s3_uri import S3Uri
from handlers.monitoring.errors import DriftConfigurationError

ENV_CAPTURE_URI = "CAPTURE_S3_URI"  # the endpoint's data-capture destination
ENV_ENDPOINT = "ENDPOINT_NAME"
ENV_BASELINE_URI = "BASELINE_S3_URI"  # baseline.json, or a model.tar.gz holding one
ENV_PIPELINE = "PIPELINE_NAME"  # started on drift
ENV_ALERT_TOPIC = "ALERT_TOPIC_ARN"
ENV_DRIFT_PSI = "DRIFT_PSI"
ENV_CONFIDENCE_WARN = "CONFIDENCE_WARN"
ENV_CONFIDENCE_RETRAIN = "CONFIDENCE_RETRAIN"
ENV_WINDOW_HOURS = "WINDOW_HOURS"
ENV_MIN_RECORDS = "MIN_RECORDS"
ENV_VARIANT_NAMES = "VARIANT_NAMES"  # comma-separated; default: the variants found in the capture
# Without a baseline at BASELINE_S3_URI, one is built from this many first captured requests.
ENV_BASELINE_REQUESTS = "BASELINE_REQUESTS"


@dataclass(frozen=True)
class DriftSettings:
    """The monitor's configuration, read from the environment once per invocation."""

    capture_uri: str
    endpoint_name: str
    baseline_uri: str
    pipeline_name: str
    alert_topic_arn: str
    drift_psi: float = 0.2
    confidence_warn: float = 0.88
    confidence_retrain: float = 0.80
    window_hours: float = 24.0
    min_records: int = 30
    variant_names: tuple[str, ...] = ()
    baseline_requests: int = 100

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DriftSettings:
        """Required: ``CAPTURE_S3_URI``, ``ENDPOINT_NAME``, ``BASELINE_S3_URI``, ``PIPELINE_NAME``,
        ``ALERT_TOPIC_ARN``; a bad value is a :class:`DriftConfigurationError`."""
        source = os.environ if env is None else env
        required = {}
        for name in (
            ENV_CAPTURE_URI,
            ENV_ENDPOINT,
            ENV_BASELINE_URI,
            ENV_PIPELINE,
            ENV_ALERT_TOPIC,
        ):
            value = source.get(name, "").strip()
            if not value:
                raise DriftConfigurationError(f"{name} is not set")
            required[name] = value
        settings = cls(
            capture_uri=required[ENV_CAPTURE_URI],
            endpoint_name=required[ENV_ENDPOINT],
            baseline_uri=required[ENV_BASELINE_URI],
            pipeline_name=required[ENV_PIPELINE],
            alert_topic_arn=required[ENV_ALERT_TOPIC],
            drift_psi=_number(source, ENV_DRIFT_PSI, 0.2),
            confidence_warn=_number(source, ENV_CONFIDENCE_WARN, 0.88),
            confidence_retrain=_number(source, ENV_CONFIDENCE_RETRAIN, 0.80),
            window_hours=_number(source, ENV_WINDOW_HOURS, 24.0),
            min_records=int(_number(source, ENV_MIN_RECORDS, 30)),
            variant_names=tuple(v.strip() for v in source.get(ENV_VARIANT_NAMES, "").split(",") if v.strip()),
            baseline_requests=int(_number(source, ENV_BASELINE_REQUESTS, 100)),
        )
        if not 0 < settings.confidence_retrain <= settings.confidence_warn <= 1:
            raise DriftConfigurationError("need 0 < CONFIDENCE_RETRAIN <= CONFIDENCE_WARN <= 1")
        if (
            min(settings.drift_psi, settings.window_hours, settings.min_records, settings.baseline_requests)
            <= 0
        ):
            raise DriftConfigurationError(
                "DRIFT_PSI, WINDOW_HOURS, MIN_RECORDS and BASELINE_REQUESTS must be positive"
            )
        for name, uri in (
            (ENV_CAPTURE_URI, settings.capture_uri),
            (ENV_BASELINE_URI, settings.baseline_uri),
        ):
            try:
                S3Uri.parse(uri)
            except ValueError as exc:
                raise DriftConfigurationError(f"{name}: {exc}") from exc
        return settings


def _number(source: Mapping[str, str], name: str, default: float) -> float:
    raw = source.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise DriftConfigurationError(f"{name}={raw!r} is not a number") from exc
