"""The platform's loop on this machine, through the cloud's own artefacts, step by step.

data -> the training pipeline (the definition the Pulumi program deploys, executed by the
emulator: prepare -> train -> evaluate -> gate -> register) -> champion vs challenger -> approve ->
deploy -> infer -> capture -> drift, against the local emulator (:mod:`emulator.server`):

- the names come from the Pulumi program's outputs under the mock runtime (``infra.offline``);
- the pipeline starts and is followed with ``mlctl train``'s own calls (StartPipelineExecution,
  ListPipelineExecutionSteps); the version it registers is read back from the registry;
- approval is ``handlers.registry``'s UpdateModelPackage, as in the console; its EventBridge event
  runs the deployer Lambda in the emulator (CreateEndpoint / UpdateEndpoint, then its verification
  on the endpoint's events), which the loop follows (:mod:`mlctl.local.deployer_watch`);
- predictions go over HTTP through the local API Gateway to the real API Lambda handler;
- the drift check is ``handlers.monitoring.handler.check_drift`` on the captured traffic.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.clients import emulator_client
from emulator.training import s3 as s3io
from handlers.common.contracts import HIGHER, INPUT_SCHEMA_FILE, LOWER, SERVING_PREFIX
from handlers.common.s3_uri import S3Uri
from infra.pipeline_definition import PREPARE_STEP, REGISTER_STEP
from infra.stack_config import StackConfig, project_root
from mlctl import invoke

Say = Callable[[str], None]
CAPTURE_WAIT_S = 20.0
DEPLOY_TIMEOUT_S = 300.0
REPLAY_LIMIT = 500


class WorkflowError(RuntimeError):
    """A step failed; the message says which and what to look at."""


@dataclass(frozen=True)
class StackNames:
    """The resource names the Pulumi program declares (its outputs under the mock runtime)."""

    region: str
    buckets: dict[str, str]
    group: str
    endpoint: str
    pipeline: str
    training_role_arn: str
    model_role_arn: str
    kms_key_arn: str
    capture_uri: str
    alert_topic_arn: str
    deployer_function: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any]) -> StackNames:
        return cls(
            region=str(outputs["region"]),
            buckets={k: str(v) for k, v in outputs["bucketNames"].items()},
            group=str(outputs["modelPackageGroupName"]),
            endpoint=str(outputs["endpointName"]),
            pipeline=str(outputs["trainingPipelineName"]),
            training_role_arn=str(outputs["trainingRoleArn"]),
            model_role_arn=str(outputs["modelRoleArn"]),
            kms_key_arn=str(outputs["kmsKeyArn"]),
            capture_uri=str(outputs["dataCaptureUri"]),
            alert_topic_arn=str(outputs["alertTopicArn"]),
            deployer_function=str(outputs["deployerFunctionName"]),
        )


@dataclass(frozen=True)
class PipelineRun:
    """One succeeded execution of the training pipeline and the version it registered."""

    execution_arn: str
    version: Any  # handlers.registry.client.ModelVersion
    dataset_uri: str  # the Prepare step's output: train/, validation/, test/
    model_dir: Path  # the registered model.tar.gz, extracted
    dataset_dir: Path  # the test split, downloaded


class Workflow:
    """One run of the loop (run number ``run``) against the emulator at ``aws_url``, whose Lambda
    runtime records its invocations in ``invocations`` (the deployer's among them)."""

    def __init__(
        self,
        config: StackConfig,
        names: StackNames,
        aws_url: str,
        work_dir: Path,
        say: Say,
        *,
        run: int,
        epochs: int | None,
        invocations: Path,
    ) -> None:
        self.config = config
        self.names = names
        self.aws_url = aws_url
        self.work_dir = work_dir
        self.say = say
        self.run = run
        self.epochs = epochs
        self.invocations = invocations
        self.builtin_task = config.training.builtin_task
        self.s3 = self.client("s3")
        self.sagemaker = self.client("sagemaker")

    def client(self, service: str) -> Any:
        return emulator_client(service, self.names.region, self.aws_url)

    # --- data ------------------------------------------------------------------------------------------

    def put_raw_data(self) -> str:
        """New raw data for this run under ``raw/``: the team's files (``training.dataset.localSample``)
        or the built-in task's dataset on the first run, then a new batch each run (:func:`new_batch`)."""
        dataset = self.config.training.dataset
        if dataset is not None and dataset.local_sample is not None:
            return self._put_team_data(project_root() / dataset.local_sample)
        if self.builtin_task is None:
            raise WorkflowError(
                "ml-platform:training.dataset.localSample is not set: local mode needs a file or folder "
                "of the team's data to put under raw/"
            )
        from training_jobs import datasets  # noqa: PLC0415

        folder = Path(tempfile.mkdtemp(dir=self.work_dir, prefix="raw-"))
        path = datasets.write_raw(self.builtin_task, folder, seed=self.run)
        if self.run > 1:
            new_batch(self.builtin_task, path, seed=self.run)
        key = f"raw/run-{self.run:03d}/{path.name}"
        self.s3.upload_file(str(path), self.names.buckets["raw"], key)
        self.say(
            f"put {path.stat().st_size:,} bytes of {self.builtin_task} data at "
            f"s3://{self.names.buckets['raw']}/{key}"
        )
        return f"s3://{self.names.buckets['raw']}/raw/"

    def _put_team_data(self, sample: Path) -> str:
        """Every file of the team's sample under ``raw/run-NNN/`` (the same rows again on a later run:
        the preparer dedupes them, and their splits stay put)."""
        files = [sample] if sample.is_file() else sorted(p for p in sample.rglob("*") if p.is_file())
        if not files:
            raise WorkflowError(f"training.dataset.localSample {sample} holds no files")
        prefix = f"raw/run-{self.run:03d}"
        for path in files:
            relative = path.name if sample.is_file() else path.relative_to(sample).as_posix()
            self.s3.upload_file(str(path), self.names.buckets["raw"], f"{prefix}/{relative}")
        size = sum(path.stat().st_size for path in files)
        self.say(
            f"put {len(files)} file(s), {size:,} bytes of the team's data at s3://{self.names.buckets['raw']}/{prefix}/"
        )
        return f"s3://{self.names.buckets['raw']}/raw/"

    # --- the training pipeline ------------------------------------------------------------------------

    def run_pipeline(self) -> PipelineRun:
        """StartPipelineExecution on the stack's pipeline and follow it, as ``mlctl train`` does."""
        from handlers.registry.client import ModelRegistry  # noqa: PLC0415
        from mlctl.train import SUCCEEDED, follow_execution, list_steps, start_training  # noqa: PLC0415

        arn = start_training(self.sagemaker, self.names.pipeline, epochs=self.epochs)
        epochs = "the configured epochs" if self.epochs is None else f"{self.epochs} epochs"
        self.say(f"started {self.names.pipeline} ({epochs}): {arn.rsplit('/', 1)[1]}")
        outcome = follow_execution(
            self.sagemaker, arn, poll_seconds=0.5, say=lambda line: self.say(f"  {line}")
        )
        if outcome.status != SUCCEEDED:
            where = f" at step {outcome.failed_step}" if outcome.failed_step else ""
            raise WorkflowError(f"the training pipeline {outcome.status}{where}: {outcome.failure_reason}")
        steps = {str(step["StepName"]): step for step in list_steps(self.sagemaker, arn)}
        version = ModelRegistry(self.sagemaker).describe(
            steps[REGISTER_STEP]["Metadata"]["RegisterModel"]["Arn"]
        )
        prepare_job = steps[PREPARE_STEP]["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[1]
        outputs = self.sagemaker.describe_processing_job(ProcessingJobName=prepare_job)[
            "ProcessingOutputConfig"
        ]
        dataset_uri = next(o["S3Output"]["S3Uri"] for o in outputs["Outputs"] if o["OutputName"] == "dataset")
        dataset_dir = self.work_dir / f"dataset-{self.run}"
        self._download_prefix(f"{dataset_uri.rstrip('/')}/test/", dataset_dir / "test")
        self._download_prefix(f"{dataset_uri.rstrip('/')}/manifest.json", dataset_dir)
        model_dir = self._extract(str(version.artifact_uri), self.work_dir / f"model-{self.run}")
        self.say(f"registered {version.label} ({version.status}): {_metrics_text(version.metrics)}")
        return PipelineRun(arn, version, dataset_uri, model_dir, dataset_dir)

    def save_training_curve(self, model: PipelineRun, target: Path) -> Path | None:
        """The training history as a PNG (loss and validation metric per epoch)."""
        history_file = model.model_dir / "training_history.json"
        if not history_file.is_file():
            return None
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt  # noqa: PLC0415

        epochs = json.loads(history_file.read_text())["epochs"]
        figure, axis = plt.subplots(figsize=(6, 3.5))
        for name in sorted({key for epoch in epochs for key in epoch if key != "epoch"}):
            axis.plot(
                [e.get("epoch", i + 1) for i, e in enumerate(epochs)],
                [e.get(name) for e in epochs],
                label=name,
            )
        axis.set_xlabel("epoch")
        axis.set_title(f"{self.builtin_task or 'model'}: training run {self.run}")
        axis.legend(fontsize="small")
        figure.tight_layout()
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=100)
        plt.close(figure)
        return target

    # --- the champion gate, approval and deployment -------------------------------------------------

    def champion_gate(self, run: PipelineRun) -> Any:
        """``handlers.registry.champion`` before approval: the challenger against the serving version on
        this run's held-out split (both evaluated here) and on a replay of the captured traffic.
        Records the decision in the challenger's registry entry; a refusal rejects it and stops
        the run. Returns the decision, or None when nothing serves yet."""
        from handlers.registry import champion as gate  # noqa: PLC0415
        from handlers.registry.client import ModelRegistry  # noqa: PLC0415

        challenger = run.version
        serving = ModelRegistry(self.sagemaker).latest_approved(self.names.group)
        if serving is None or serving.artifact_uri is None:
            return None
        champion_dir = self._extract(serving.artifact_uri, self.work_dir / f"champion-{self.run}")
        # Both on this run's test split, which the challenger's own evaluation step also used: the
        # challenger's report against the champion's, evaluated here the same way.
        champion_report = self._evaluate_dir(champion_dir, run.dataset_dir, f"champion-evaluation-{self.run}")
        challenger_report = self._read_json(str(challenger.evaluation_report_uri))
        replay = None
        if self.builtin_task is not None:  # the built-in inference module answers in-process
            instances = self._captured_instances()
            replay = gate.replay_comparison(
                _predictions(champion_dir, instances), _predictions(run.model_dir, instances)
            )
        margin = self.config.training.promotion_margin
        decision = gate.compare(
            _report_values(champion_report),
            _report_values(challenger_report),
            margin=margin,
            replay=replay,
            directions=_report_directions(challenger_report),
        )
        gate.record_decision(self.sagemaker, challenger.arn, decision, serving)
        agreement = (
            f", replay agreement {replay.agreement_rate:.3f} on {replay.count} requests"
            if replay is not None and replay.agreement_rate is not None
            else ""
        )
        self.say(f"champion {serving.label} vs challenger {challenger.label}: {decision.reason}{agreement}")
        if not decision.promote:
            raise WorkflowError(f"{challenger.label} was not promoted: {decision.reason}")
        return decision

    def _evaluate_dir(self, model_dir: Path, dataset_dir: Path, name: str) -> dict[str, Any]:
        """The stack's evaluation (the team's script, or the platform's) of ``model_dir`` on the split."""
        out = self.work_dir / name
        arguments = [
            "--model-dir",
            str(model_dir),
            "--test-dir",
            str(dataset_dir / "test"),
            "--output-dir",
            str(out),
        ]
        source = self.config.training.source
        if source is not None and source.evaluate is not None:
            _run_team_script(project_root() / source.dir, source.evaluate, arguments)
        else:
            from training_jobs import evaluate  # noqa: PLC0415

            dataset = self.config.training.dataset
            if self.builtin_task is None and dataset is not None:  # the generic evaluator: a team's model
                arguments += ["--problem", dataset.problem, "--manifest", str(dataset_dir / "manifest.json")]
            with contextlib.redirect_stdout(io.StringIO()):  # the script prints its metrics; we say them
                code = evaluate.main(arguments)
            if code != 0:
                raise WorkflowError(f"evaluating {model_dir.name} failed")
        report: dict[str, Any] = json.loads((out / "evaluation.json").read_text())
        return report

    def _read_json(self, uri: str) -> Any:
        location = S3Uri.parse(uri)
        return json.loads(self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())

    def _captured_instances(self, limit: int = REPLAY_LIMIT) -> list[Any]:
        """The instances of recently captured requests (newest files first), for the replay."""
        capture = S3Uri.parse(self.names.capture_uri)
        bucket, prefix = capture.bucket, capture.key
        listing = [
            item
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        instances: list[Any] = []
        for item in sorted(listing, key=lambda i: i["LastModified"], reverse=True):
            body = self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for line in body.splitlines():
                data = json.loads(line)["captureData"]["endpointInput"]["data"]
                instances.extend(json.loads(data).get("instances", []))
            if len(instances) >= limit:
                break
        return instances[:limit]

    def approve(self, version: Any) -> Any:
        """UpdateModelPackage to Approved, as in the console: SageMaker's event does the rest."""
        from handlers.registry.client import ModelRegistry  # noqa: PLC0415

        approved = ModelRegistry(self.sagemaker).approve(version.arn, "approved by mlctl local up")
        self.say(f"approved {approved.label}")
        return approved

    def deploy(self, version: Any) -> Any:
        """Wait for the deployer Lambda, run by the approval's event, to deploy ``version`` and verify
        it; its refusal or failure stops the run with its reason."""
        from mlctl.local.deployer_watch import DeployerError, DeployerWatch  # noqa: PLC0415

        watch = DeployerWatch(
            self.sagemaker, self.s3, self.invocations, self.names.deployer_function, self.names.endpoint
        )
        try:
            deployed = watch.wait(version, DEPLOY_TIMEOUT_S)
        except DeployerError as exc:
            raise WorkflowError(str(exc)) from None
        self.say(
            f"the deployer ({self.names.deployer_function}) {deployed.action} {deployed.endpoint}: "
            f"InService on {deployed.config_name}, verified"
        )
        files = ", ".join(uri.rsplit("/", 1)[1] for uri in deployed.published)
        self.say(f"published {files} for the API and drift (deployer invocations: {self.invocations})")
        return deployed

    # --- traffic, capture, drift -----------------------------------------------------------------------

    def send_sample_requests(
        self, api_url: str, api_key: str | None, dataset_dir: Path, count: int = 400
    ) -> list[Any]:
        """Real HTTP requests to the API, one instance each, from the test split (signed under IAM auth)."""
        from handlers.common.input_schema import parse_input_schema  # noqa: PLC0415

        schema = parse_input_schema(self._served_file(INPUT_SCHEMA_FILE))
        if self.builtin_task is not None:
            records = _test_records(self.builtin_task, dataset_dir)[:count]
        else:
            records = _team_test_records(schema, dataset_dir, self.config.training)[:count]
        answers = []
        for features, label in records:
            instance = _api_instance(schema, features)
            request = {"instances": [instance]}
            status, body = post_json(f"{api_url}/v1/predict", request, api_key, self.names.region)
            if status != 200:
                raise WorkflowError(f"the API answered {status}: {body}")
            answers.append((label, body))
        correct = sum(1 for label, body in answers if _is_correct(label, body))
        label, first = answers[0]
        self.say(
            f"{len(answers)} predictions over HTTP, {correct} match the test labels; e.g. label {label}: "
            + json.dumps(first)[:150]
        )
        return answers

    def _served_file(self, name: str) -> str:
        """A serving file the deployer published for the API and the drift monitor (artifacts/serving/)."""
        bucket, key = self.names.buckets["artifacts"], f"{SERVING_PREFIX}/{name}"
        try:
            return str(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        except self.s3.exceptions.NoSuchKey:
            raise WorkflowError(f"the deployer published no {name} at s3://{bucket}/{key}") from None

    def wait_for_capture(self, minimum: int) -> list[str]:
        """The endpoint's data-capture objects, once the gateway has flushed ``minimum`` records."""
        capture = S3Uri.parse(self.names.capture_uri)
        bucket, prefix = capture.bucket, capture.key
        deadline = time.monotonic() + CAPTURE_WAIT_S
        lines: dict[str, int] = {}  # capture files are written once: each is read once
        while True:
            keys = [
                item["Key"]
                for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
            for key in keys:
                if key not in lines:
                    lines[key] = _line_count(self.s3, bucket, key)
            records = sum(lines.values())
            if records >= minimum or time.monotonic() > deadline:
                self.say(
                    f"data capture: {records} records in {len(keys)} files under {self.names.capture_uri}"
                )
                return keys
            time.sleep(0.5)

    def drift_check(self, environment: dict[str, str]) -> Any:
        """The drift Lambda's check with its own environment (from the plan), over the last hour."""
        from handlers.monitoring.handler import check_drift  # noqa: PLC0415
        from handlers.monitoring.settings import DriftSettings  # noqa: PLC0415

        settings = DriftSettings.from_env({**environment, "WINDOW_HOURS": "1"})
        report = check_drift(
            settings,
            now=datetime.now(UTC),
            s3=self.s3,
            cloudwatch=self.client("cloudwatch"),
            sagemaker=self.sagemaker,
            sns=self.client("sns"),
        )
        details = "; ".join(
            f"{v.variant}: {v.captured_records} records, mean confidence "
            f"{v.mean_confidence if v.mean_confidence is None else round(v.mean_confidence, 3)}, "
            f"max PSI {v.max_psi if v.max_psi is None else round(v.max_psi, 3)}"
            for v in report.variants
        )
        self.say(f"drift check: {report.status} ({details or report.reason})")
        if report.pipeline_execution_arn:
            self.say(
                f"retraining started: {report.pipeline_execution_arn} (recorded in the emulator; "
                "`mlctl local up --keep` runs the loop again here)"
            )
        return report

    # --- S3 staging --------------------------------------------------------------------------------------

    def _download_prefix(self, uri: str, target: Path) -> Path:
        """Every object under ``uri`` into ``target``, keeping relative paths (the job's input)."""
        s3io.download_prefix(self.s3, s3io.parse_location(uri), target)
        return target

    def _upload_folder(self, folder: Path, bucket: str, prefix: str) -> None:
        s3io.upload_tree(self.s3, folder, S3Uri(bucket, prefix))

    def _extract(self, uri: str, target: Path) -> Path:
        source = S3Uri.parse(uri)
        target.mkdir(parents=True, exist_ok=True)
        archive = target.with_suffix(".tar.gz")
        self.s3.download_file(source.bucket, source.key, str(archive))
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
        return target


def new_batch(task_name: str, path: Path, *, seed: int, share: float = 0.3) -> None:
    """Rewrite the raw file at ``path`` as a new batch: a seeded sample of its records with each
    numeric feature moved by up to one unit (kept within the data's range). Stands in for fresh
    data arriving, so a later run trains on a new dataset version; text tasks already vary by seed.
    """
    import random  # noqa: PLC0415

    from training_jobs.tasks import (  # noqa: PLC0415
        Record,  # noqa: PLC0415
        get_task,
        read_records,
        write_records,
    )

    task = get_task(task_name)
    rows = [(r.features, r.target) for r in read_records(task, path) if not isinstance(r.features, str)]
    if not rows:
        return
    rng = random.Random(seed)
    low = min(min(features) for features, _ in rows)
    high = max(max(features) for features, _ in rows)
    step = (high - low) / 16 if high > low else 1.0
    chosen = rng.sample(rows, max(1, int(len(rows) * share)))
    moved = [
        Record(tuple(min(high, max(low, v + rng.choice((-step, 0.0, step)))) for v in features), target)
        for features, target in chosen
    ]
    write_records(task, moved, path)


def post_json(url: str, document: Any, api_key: str | None, region: str | None = None) -> tuple[int, Any]:
    """POST ``document`` as JSON (``mlctl invoke``'s client) with the API key or, without one (IAM
    auth), signed for ``region`` as local mode's gateway expects; (status, parsed body)."""
    body = json.dumps(document).encode()
    answer = (
        invoke.post_json_locally(url, body, api_key, region)
        if region
        else invoke.post_json(url, body, api_key)
    )
    try:
        return answer.status, json.loads(answer.body or "null")
    except ValueError:
        return answer.status, answer.body


def _report_values(report: Mapping[str, Any]) -> dict[str, float]:
    """Metric name -> value of an evaluation.json."""
    return {name: float(metric["value"]) for name, metric in report["metrics"].items()}


def _report_directions(report: Mapping[str, Any]) -> dict[str, bool]:
    """Metric name -> higher is better, as an evaluation.json states it."""
    return {
        name: metric["direction"] == HIGHER
        for name, metric in report["metrics"].items()
        if metric.get("direction") in (HIGHER, LOWER)
    }


def _run_team_script(folder: Path, script: str, arguments: list[str]) -> None:
    """A team's script from its source folder, with none of the platform's packages on its path."""
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(  # noqa: S603 - this interpreter and the stack's own script
        [sys.executable, script, *arguments], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-2:])
        raise WorkflowError(f"{script} failed (exit {result.returncode}): {tail}")


def _test_records(task_name: str, dataset_dir: Path) -> list[tuple[Any, Any]]:
    from training_jobs.tasks import get_task  # noqa: PLC0415

    task = get_task(task_name)
    records: list[Any] = []
    for path in sorted((dataset_dir / "test").glob("*")):
        if path.is_file() and path.suffix in {".csv", ".jsonl"}:
            lines = path.read_text().splitlines()
            if path.suffix == ".csv":
                lines = lines[1:]  # the header
            records.extend(task.parse(line) for line in lines if line.strip())
    return [(record.features, record.target) for record in records]


def _team_test_records(schema: Any, dataset_dir: Path, training: Any) -> list[tuple[Any, Any]]:
    """(API instance, label) per row of a generic preparer's test split: tabular rows by feature
    name, categorical codes given back as their category, or JSON-lines texts."""
    import csv  # noqa: PLC0415

    dataset = training.dataset
    if dataset is None or dataset.format not in ("csv", "parquet", "jsonl"):
        raise WorkflowError("local sample requests need a tabular or JSON-lines training.dataset")
    test = dataset_dir / "test"
    if dataset.format == "jsonl":
        lines = (test / "data.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        return [({"text": row[dataset.text_field]}, row[dataset.label_field]) for row in rows]
    vocabularies = dict(getattr(schema, "categories", ()))
    with (test / "data.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = []
    for row in rows:
        instance: dict[str, Any] = {}
        for name in schema.feature_names:
            value = row[name]
            instance[name] = vocabularies[name][int(float(value))] if name in vocabularies else float(value)
        records.append((instance, row[dataset.target]))
    return records


def _api_instance(schema: Any, features: Any) -> Any:
    if isinstance(features, dict):
        return features  # a team's record, already by feature name
    kind = getattr(schema, "kind", "")
    if kind == "image":
        import base64  # noqa: PLC0415

        return {"b64": base64.b64encode(bytes(int(v) for v in features)).decode()}
    if kind == "text":
        return {"text": features if isinstance(features, str) else str(features)}
    return list(features)


def _predictions(model_dir: Path, instances: list[Any]) -> list[dict[str, Any]]:
    """The inference handler's predictions of the model in ``model_dir`` (in this process)."""
    from handlers.serving import inference  # noqa: PLC0415 - torch: only the champion gate needs it

    if not instances:
        return []
    model = inference.model_fn(str(model_dir))
    return list(inference.predict_fn(instances, model)["predictions"])


def _is_correct(label: Any, body: Any) -> bool:
    """A classifier's answer names the label; a regressor's is a number (never "correct")."""
    try:
        return str(body["predictions"][0]) == str(label)
    except (KeyError, IndexError, TypeError):
        return False


def _line_count(s3: Any, bucket: str, key: str) -> int:
    return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines())


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())[:6])
