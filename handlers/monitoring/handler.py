"""The drift monitor: a scheduled Lambda that compares an endpoint's captured traffic with its baseline.

Per variant: mean confidence (ok / warn / retrain) and, per feature, PSI and a KS test against the
baseline; on drift it starts the retraining pipeline and alerts. A window with too few records is
``no-data``, never "no drift". The baseline is the served version's ``baseline.json``; a version
without one (a model brought from elsewhere) gets one built from its first captured requests
(``captured_baseline``), stored there so every later check compares with the same one.
Thresholds, metrics and environment: docs/operations.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from handlers.common.aws_clients import LazyClient, botocore_client
from handlers.common.contracts import BASELINE_FILE, BASELINE_FORMAT, METRICS_NAMESPACE
from handlers.common.s3_uri import S3Uri
from handlers.monitoring.capture import (
    CapturedRequest,
    CapturedWindow,
    RowOf,
    add_capture_lines,
    hour_prefixes,
)
from handlers.monitoring.captured_baseline import (
    CAPTURED_SOURCE,
    build_captured_baseline,
    paths_row,
)
from handlers.monitoring.errors import BaselineNotFoundError, DriftActionError, DriftConfigurationError
from handlers.monitoring.settings import DriftSettings
from handlers.monitoring.stats import bin_proportions, ks_test, mean, psi

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

OK, WARN, RETRAIN, NO_DATA = "ok", "warn", "retrain", "no-data"
UNAVAILABLE = "unavailable"  # regressors: their answers carry no confidence
_SEVERITY = {NO_DATA: 0, OK: 1, WARN: 2, RETRAIN: 3}
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_ARCHIVES = (".tar.gz", ".tgz")
_RUNNING = frozenset({"Executing", "Stopping"})

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "drift-monitor"))
tracer = Tracer(patch_modules=["botocore"])
metrics = Metrics(namespace=METRICS_NAMESPACE)
s3_client: LazyClient[S3Client] = LazyClient(lambda: cast("S3Client", botocore_client("s3")))
cloudwatch_client: LazyClient[Any] = LazyClient(lambda: botocore_client("cloudwatch"))
sagemaker_client: LazyClient[SageMakerClient] = LazyClient(
    lambda: cast("SageMakerClient", botocore_client("sagemaker"))
)
sns_client: LazyClient[Any] = LazyClient(lambda: botocore_client("sns"))


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    drifted: bool
    baseline_mean: float
    window_mean: float | None


@dataclass
class VariantReport:
    """One variant's window: its status and every number behind it."""

    variant: str
    status: str
    captured_records: int
    instances: int
    mean_confidence: float | None
    confidence_status: str
    max_psi: float | None
    drifted_features: list[str]
    features: list[FeatureDrift] = field(default_factory=list)
    skipped_lines: int = 0
    skipped_instances: int = 0
    reason: str = ""


@dataclass
class DriftReport:
    """The whole check: overall status (the worst variant's), actions taken, per-variant detail."""

    endpoint: str
    window_start: str
    window_end: str
    status: str
    variants: list[VariantReport]
    reason: str
    pipeline_execution_arn: str | None = None
    pipeline_already_running: bool = False
    notified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- pure decisions --------------------------------------------------------------------------------


def confidence_status(mean_confidence: float | None, warn: float, retrain: float) -> str:
    """``ok`` at or above ``warn``, ``warn`` at or above ``retrain``, else ``retrain``.

    With the defaults (0.88 / 0.80) the weekly means 0.92, 0.90, 0.85, 0.75 read ok, ok, warn,
    retrain. ``None`` (no confidences: a regressor) is ``unavailable``.
    """
    if mean_confidence is None:
        return UNAVAILABLE
    if mean_confidence >= warn:
        return OK
    if mean_confidence >= retrain:
        return WARN
    return RETRAIN


def feature_drift(
    name: str, values: Sequence[float], baseline: Mapping[str, Any], threshold: float
) -> FeatureDrift:
    """PSI against the baseline's bins and KS against its sample, for one feature."""
    observed = bin_proportions(values, baseline["edges"])
    score = psi(baseline["proportions"], observed)
    statistic, pvalue = ks_test(values, baseline["sample"])
    return FeatureDrift(
        name=name,
        psi=score,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        drifted=score > threshold,
        baseline_mean=float(baseline["mean"]),
        window_mean=mean(values),
    )


def analyse_window(
    variant: str, window: CapturedWindow, baseline: Mapping[str, Any], settings: DriftSettings
) -> VariantReport:
    """The report of one variant's captured window against ``baseline`` (no I/O)."""
    names = list(baseline["feature_names"])
    instances = len(window.rows)
    report = VariantReport(
        variant=variant,
        status=NO_DATA,
        captured_records=window.requests,
        instances=instances,
        mean_confidence=None,
        confidence_status=UNAVAILABLE,
        max_psi=None,
        drifted_features=[],
        skipped_lines=window.skipped_lines,
        skipped_instances=window.skipped_instances,
    )
    if instances < settings.min_records:
        report.reason = (
            f"{instances} usable instances in the window, fewer than MIN_RECORDS={settings.min_records}: "
            "drift cannot be judged"
        )
        return report
    columns = {name: [row[index] for row in window.rows] for index, name in enumerate(names)}
    report.features = [
        feature_drift(name, columns[name], baseline["features"][name], settings.drift_psi) for name in names
    ]
    captured = baseline.get("source") == CAPTURED_SOURCE
    drift_of_confidence = confidence_drift(window, baseline, settings) if captured else None
    if drift_of_confidence is not None:
        report.features.append(drift_of_confidence)
    report.max_psi = max((f.psi for f in report.features), default=None)
    report.drifted_features = [f.name for f in report.features if f.drifted]
    report.mean_confidence = mean(window.confidences)
    if captured:
        # No absolute thresholds for a model the platform knows nothing of: its confidence is
        # judged against its own first answers, as a feature.
        report.confidence_status = (
            UNAVAILABLE if drift_of_confidence is None else RETRAIN if drift_of_confidence.drifted else OK
        )
    else:
        report.confidence_status = confidence_status(
            report.mean_confidence, settings.confidence_warn, settings.confidence_retrain
        )
    reasons = []
    if report.drifted_features:
        reasons.append(
            f"{len(report.drifted_features)} feature(s) with PSI > {settings.drift_psi} "
            f"(max {report.max_psi:.3f}: {', '.join(report.drifted_features[:5])})"
        )
    if report.confidence_status in (WARN, RETRAIN) and not captured:
        threshold = (
            settings.confidence_retrain if report.confidence_status == RETRAIN else settings.confidence_warn
        )
        reasons.append(f"mean confidence {report.mean_confidence:.3f} < {threshold}")
    if report.drifted_features or report.confidence_status == RETRAIN:
        report.status = RETRAIN
    elif report.confidence_status == WARN:
        report.status = WARN
    else:
        report.status = OK
    report.reason = "; ".join(reasons) or "within thresholds"
    return report


def confidence_drift(
    window: CapturedWindow, baseline: Mapping[str, Any], settings: DriftSettings
) -> FeatureDrift | None:
    """The window's confidences against a captured baseline's, as the feature ``confidence``."""
    reference = baseline.get("confidence")
    if not isinstance(reference, Mapping) or not reference.get("sample") or not window.confidences:
        return None
    return feature_drift("confidence", window.confidences, reference, settings.drift_psi)


def overall_status(variants: Sequence[VariantReport]) -> str:
    """The worst variant's status; ``no-data`` only when no variant had data."""
    return max((v.status for v in variants), key=_SEVERITY.__getitem__, default=NO_DATA)


# --- I/O ---------------------------------------------------------------------------------------------


def load_baseline(s3: S3Client, uri: str) -> dict[str, Any]:
    """The baseline document at ``uri``: a ``baseline.json``, or the one inside a ``model.tar.gz``."""
    location = S3Uri.parse(uri)
    bucket, key = location.bucket, location.prefix
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        if key.endswith(_ARCHIVES):
            document = _baseline_from_archive(body, uri)
        else:
            document = json.loads(body.read())
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise BaselineNotFoundError(f"no baseline at {uri} ({code})") from exc
        raise
    except (ValueError, tarfile.TarError) as exc:
        raise DriftConfigurationError(f"the baseline at {uri} is not readable: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise DriftConfigurationError(f"the baseline at {uri} is not a {BASELINE_FORMAT} document")
    return document


def find_baseline(s3: S3Client, uri: str) -> dict[str, Any] | None:
    """The baseline at ``uri``, or None when no ``baseline.json`` is there (the deployer withdraws it
    for a version without one). A model archive without one stays an error: it was named on purpose."""
    try:
        return load_baseline(s3, uri)
    except BaselineNotFoundError:
        if S3Uri.parse(uri).prefix.endswith(_ARCHIVES):
            raise
        return None


def store_baseline(s3: S3Client, uri: str, baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Write a built baseline to ``uri`` unless one is there already; returns the one that is there
    (a concurrent check, or a retry, that wrote first wins, so every check compares with one)."""
    location = S3Uri.parse(uri)
    try:
        s3.put_object(
            Bucket=location.bucket,
            Key=location.prefix,
            Body=json.dumps(baseline).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in {
            "PreconditionFailed",
            "ConditionalRequestConflict",
        }:
            raise
        return load_baseline(s3, uri)
    logger.info(
        "baseline built from captured requests", extra={"baseline_uri": uri, **baseline["built_from"]}
    )
    return dict(baseline)


def _baseline_from_archive(body: Any, uri: str) -> Any:
    # Streamed: a model archive can be gigabytes; baseline.json is read as it passes by.
    with tarfile.open(fileobj=body, mode="r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.lstrip("./") == BASELINE_FILE:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    return json.loads(extracted.read())
    raise BaselineNotFoundError(f"{uri} holds no {BASELINE_FILE}")


def variants_with_capture(s3: S3Client, bucket: str, endpoint_prefix: str) -> list[str]:
    """The variant folders under ``<capture prefix>/<endpoint>/``."""
    variants: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{endpoint_prefix}/", Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", []):
            variants.append(common["Prefix"].rstrip("/").rsplit("/", 1)[-1])
    return sorted(variants)


def read_window(
    s3: S3Client,
    bucket: str,
    variant_prefix: str,
    feature_names: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    row_of: RowOf | None = None,
    keep: bool = False,
) -> CapturedWindow:
    """Every capture line of one variant with an inference time in [start, end) (``row_of`` and
    ``keep``: see ``capture.add_capture_lines``)."""
    window = CapturedWindow()
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in hour_prefixes(variant_prefix, start, end):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(".jsonl"):
                    continue
                text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode("utf-8", "replace")
                window.files += 1
                add_capture_lines(window, text, feature_names, start, end, row_of=row_of, keep=keep)
    return window


def read_baseline_window(
    s3: S3Client, bucket: str, folder: str, baseline: Mapping[str, Any], *, start: datetime, end: datetime
) -> CapturedWindow:
    """A variant's window as rows of the baseline's features. A captured baseline names features by
    path, and the requests it was built from are left out (they would be compared with themselves)."""
    names = baseline["feature_names"]
    if baseline.get("source") != CAPTURED_SOURCE:
        return read_window(s3, bucket, folder, names, start=start, end=end)
    last = (baseline.get("built_from") or {}).get("last")
    if isinstance(last, str):
        start = max(start, datetime.fromisoformat(last) + timedelta(microseconds=1))
    return read_window(
        s3, bucket, folder, names, start=start, end=end, row_of=lambda instance: paths_row(instance, names)
    )


def baseline_from_capture(
    s3: S3Client,
    settings: DriftSettings,
    bucket: str,
    prefixes: Mapping[str, str],
    *,
    start: datetime,
    end: datetime,
) -> tuple[dict[str, Any] | None, list[VariantReport]]:
    """Build and store a baseline from the first ``baseline_requests`` captured requests of the
    window (every variant's). Until there are that many: no baseline, and a ``no-data`` report per
    variant saying how many there are."""
    windows = {
        name: read_window(s3, bucket, folder, (), start=start, end=end, row_of=lambda _: None, keep=True)
        for name, folder in prefixes.items()
    }
    captured = sorted((r for w in windows.values() for r in w.kept), key=_captured_order)
    wanted = settings.baseline_requests
    baseline = build_captured_baseline(captured[:wanted]) if len(captured) >= wanted else None
    if baseline is not None:
        return store_baseline(s3, settings.baseline_uri, baseline), []
    reason = (
        f"no baseline yet: {len(captured)} of the {wanted} captured requests one is built from"
        if len(captured) < wanted
        else f"the first {wanted} captured requests share no numeric feature and carry no confidence"
    )
    return None, [_without_baseline(name, window, reason) for name, window in windows.items()]


def _captured_order(request: CapturedRequest) -> datetime:
    return request.at or datetime.max.replace(tzinfo=UTC)  # undated lines last


def _without_baseline(variant: str, window: CapturedWindow, reason: str) -> VariantReport:
    return VariantReport(
        variant=variant,
        status=NO_DATA,
        captured_records=window.requests,
        instances=0,
        mean_confidence=None,
        confidence_status=UNAVAILABLE,
        max_psi=None,
        drifted_features=[],
        skipped_lines=window.skipped_lines,
        reason=reason,
    )


def publish_metrics(cloudwatch: Any, endpoint: str, variants: Sequence[VariantReport]) -> None:
    """The four drift metrics per variant (only ``CapturedRecords`` for a variant without data)."""
    data: list[dict[str, Any]] = []
    for report in variants:
        dimensions = [
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": report.variant},
        ]
        values: list[tuple[str, float, str]] = [("CapturedRecords", report.captured_records, "Count")]
        if report.status != NO_DATA:
            values.append(("MaxFeaturePSI", report.max_psi or 0.0, "None"))
            values.append(("DriftedFeatures", len(report.drifted_features), "Count"))
            if report.mean_confidence is not None:
                values.append(("MeanConfidence", report.mean_confidence, "None"))
        data.extend(
            {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": unit}
            for name, value, unit in values
        )
    if not variants:
        data.append(
            {
                "MetricName": "CapturedRecords",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
                "Value": 0.0,
                "Unit": "Count",
            }
        )
    for start in range(0, len(data), 20):  # at most 20 values per call in older SDKs and emulators
        cloudwatch.put_metric_data(Namespace=METRICS_NAMESPACE, MetricData=data[start : start + 20])


def start_retraining(sagemaker: SageMakerClient, settings: DriftSettings, report: DriftReport) -> None:
    """Start the pipeline with ``DatasetVersion=latest``, unless an execution is already running."""
    try:
        running = sagemaker.list_pipeline_executions(
            PipelineName=settings.pipeline_name, SortBy="CreationTime", SortOrder="Descending", MaxResults=10
        ).get("PipelineExecutionSummaries", [])
        active = [e for e in running if e.get("PipelineExecutionStatus") in _RUNNING]
        if active:
            report.pipeline_already_running = True
            report.pipeline_execution_arn = active[0].get("PipelineExecutionArn")
            return
        # Same endpoint and window end: a Lambda retry does not start a second execution.
        token = hashlib.sha256(f"{settings.endpoint_name}|{report.window_end}".encode()).hexdigest()[:64]
        response = sagemaker.start_pipeline_execution(
            PipelineName=settings.pipeline_name,
            PipelineParameters=[{"Name": "DatasetVersion", "Value": "latest"}],
            PipelineExecutionDescription=f"drift on {settings.endpoint_name}: {report.reason}"[:3072],
            ClientRequestToken=token,
        )
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        raise DriftActionError(f"could not start pipeline {settings.pipeline_name!r}: {code}", code) from exc
    report.pipeline_execution_arn = response["PipelineExecutionArn"]


def notify(sns: Any, settings: DriftSettings, report: DriftReport) -> None:
    subject = f"[{report.status}] drift check of {settings.endpoint_name}"[:100]
    summary = {
        "endpoint": report.endpoint,
        "status": report.status,
        "reason": report.reason,
        "window": [report.window_start, report.window_end],
        "pipeline_execution_arn": report.pipeline_execution_arn,
        "pipeline_already_running": report.pipeline_already_running,
        "variants": [
            {
                k: getattr(v, k)
                for k in ("variant", "status", "mean_confidence", "max_psi", "drifted_features")
            }
            for v in report.variants
        ],
    }
    sns.publish(TopicArn=settings.alert_topic_arn, Subject=subject, Message=json.dumps(summary, default=str))
    report.notified = True


def check_drift(
    settings: DriftSettings,
    *,
    now: datetime,
    s3: S3Client,
    cloudwatch: Any,
    sagemaker: SageMakerClient,
    sns: Any,
) -> DriftReport:
    """Run one check for the window ending at ``now``: read, judge, publish, react.

    Returns the report; raises :class:`DriftActionError` (after metrics and the alert went out)
    when retraining was due but could not be started.
    """
    end = now.astimezone(UTC)
    start = end - timedelta(hours=settings.window_hours)
    baseline = find_baseline(s3, settings.baseline_uri)
    capture = S3Uri.parse(settings.capture_uri)
    bucket, prefix = capture.bucket, capture.prefix
    endpoint_prefix = "/".join(p for p in (prefix, settings.endpoint_name) if p)
    try:
        names = list(settings.variant_names) or variants_with_capture(s3, bucket, endpoint_prefix)
        prefixes = {name: f"{endpoint_prefix}/{name}" for name in names}
        variants: list[VariantReport] = []
        if baseline is None:
            baseline, variants = baseline_from_capture(s3, settings, bucket, prefixes, start=start, end=end)
        if baseline is not None:
            variants = [
                analyse_window(
                    name,
                    read_baseline_window(s3, bucket, folder, baseline, start=start, end=end),
                    baseline,
                    settings,
                )
                for name, folder in prefixes.items()
            ]
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) != "NoSuchBucket":
            raise
        logger.error("capture bucket does not exist", extra={"capture_uri": settings.capture_uri})
        variants = []
    status = overall_status(variants)
    if not variants:
        reason = f"no capture files under {settings.capture_uri}/{settings.endpoint_name}/ in the window"
    else:
        reason = "; ".join(f"{v.variant}: {v.reason}" for v in variants)
    report = DriftReport(
        endpoint=settings.endpoint_name,
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        status=status,
        variants=variants,
        reason=reason,
    )
    publish_metrics(cloudwatch, settings.endpoint_name, variants)
    failure: DriftActionError | None = None
    if status == RETRAIN:
        try:
            start_retraining(sagemaker, settings, report)
        except DriftActionError as exc:
            failure = exc
            report.reason += f"; retraining NOT started: {exc.message}"
    if status in (WARN, RETRAIN):
        notify(sns, settings, report)
    log = logger.warning if status in (WARN, RETRAIN, NO_DATA) else logger.info
    log(
        f"drift check: {status}",
        extra={
            "status": status,
            "reason": report.reason,
            "captured_records": sum(v.captured_records for v in variants),
            "pipeline_execution_arn": report.pipeline_execution_arn,
        },
    )
    if failure is not None:
        raise failure
    return report


def _event_time(event: Mapping[str, Any]) -> datetime:
    raw = event.get("time") if isinstance(event, Mapping) else None
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            logger.warning("event time is not ISO 8601; using the clock", extra={"time": raw})
    return datetime.now(UTC)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge schedule -> one drift check for the window ending at the event's ``time``."""
    metrics.add_metric(name="DriftChecks", unit=MetricUnit.Count, value=1)
    report = check_drift(
        DriftSettings.from_env(),
        now=_event_time(event),
        s3=s3_client.get(),
        cloudwatch=cloudwatch_client.get(),
        sagemaker=sagemaker_client.get(),
        sns=sns_client.get(),
    )
    if report.pipeline_execution_arn and not report.pipeline_already_running:
        metrics.add_metric(name="RetrainingStarted", unit=MetricUnit.Count, value=1)
    return report.as_dict()
