"""``mlctl models register`` on moto: the model is loaded by the real model server (a subprocess)
and answers one request before anything is uploaded; then content-addressed uploads and a
``PendingManualApproval`` version the deployer can find everything of.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch

from handlers.common.contracts import SAMPLE_REQUEST_FILE
from handlers.deployer.serving_files import serving_file_sources
from handlers.registry.client import PENDING
from infra.images import image_tag, repository_name
from infra.stack_config import load_stack_config
from tests.functional.conftest import GROUP, REGION
from tests.functional.mlctl.conftest import Platform, Result, set_outputs

BUCKET = "mlp-dev-artifacts-123456789012-us-east-1"
ACCOUNT = "123456789012"


def serving_images() -> dict[str, str]:
    """The dev stack's ``servingImages`` output as the program exports it (repositories + tags)."""
    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    prefix = load_stack_config("dev").name_prefix
    return {kind: f"{registry}/{repository_name(prefix, kind)}:{image_tag(kind)}" for kind in ("cpu", "gpu")}


FEATURES = ["temperature", "vibration", "pressure", "current"]
SCHEMA = {"kind": "tabular", "feature_names": FEATURES}
REPORT = {
    "metrics": {
        "accuracy": {"value": 0.91, "direction": "higher"},
        "log_loss": {"value": 0.3, "direction": "lower"},
    },
    "dataset_version": "sensors-2024-06",
    "samples": 400,
}
BASELINE: dict[str, Any] = {
    "format": "ml-platform/baseline/v1",
    "feature_names": FEATURES,
    "features": {},
    "confidence": None,
}
EXAMPLE = {"instances": [[0.5, 1.2, -0.3, 0.1]]}


def linear_model() -> torch.nn.Module:
    torch.manual_seed(11)
    return torch.nn.Linear(len(FEATURES), 3).eval()


def save_torchscript(path: Path, model: torch.nn.Module | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model or linear_model()), str(path))
    return path


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def stack(platform: Platform) -> Platform:
    """The moto platform with the stack's artifacts bucket, named in the outputs as the program does."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    set_outputs(
        platform, bucketNames={"artifacts": BUCKET, "raw": "mlp-dev-raw"}, servingImages=serving_images()
    )
    return platform


@pytest.fixture
def register(stack: Platform, mlctl: Callable[..., Result]) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        return mlctl("models", "register", *argv, *stack.target)

    return run


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "metrics": write_json(tmp_path / "evaluation.json", REPORT),
        "schema": write_json(tmp_path / "input-schema.json", SCHEMA),
        "baseline": write_json(tmp_path / "baseline.json", BASELINE),
        "example": write_json(tmp_path / "example.json", EXAMPLE),
    }


def bucket_keys() -> list[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def read_object(uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def one_line_error(result: Result, command: str = "models register") -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlctl {command}: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


# --- what a registration leaves --------------------------------------------------------------------


def test_a_torchscript_archive_is_checked_uploaded_by_content_and_registered_for_approval(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN a model.tar.gz holding a lone TorchScript model, its report, schema and baseline
    model_bytes = save_torchscript(tmp_path / "m.pt").read_bytes()
    archive = tarball(tmp_path / "model.tar.gz", {"model.pt": model_bytes})
    # WHEN it is registered
    result = register(
        str(archive),
        *("--metrics", str(files["metrics"]), "--input-schema", str(files["schema"])),
        *("--baseline", str(files["baseline"]), "--example", str(files["example"])),
        *("--description", "sensor faults, trained on the lab cluster"),
    )
    # THEN it printed the version number alone on stdout, after checking the model's answer
    assert result.code == 0, result.err
    assert result.out.strip() == "1"
    assert "checked: model.tar.gz loaded and answered" in result.err
    version = stack.registry.describe(GROUP, 1)
    assert version.status == PENDING
    assert version.description == "sensor faults, trained on the lab cluster"
    # AND the archive went to a key named by its sha256: its model, plus the request it was checked
    # with as the model server's warm-up request
    uploaded = read_object(version.artifact_uri)
    sha = hashlib.sha256(uploaded).hexdigest()
    assert version.artifact_uri == f"s3://{BUCKET}/registered-models/{sha}/model.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(uploaded), mode="r:gz") as packed:
        assert packed.getnames() == ["model.pt", SAMPLE_REQUEST_FILE]
        assert packed.extractfile("model.pt").read() == model_bytes  # type: ignore[union-attr]
        assert json.loads(packed.extractfile(SAMPLE_REQUEST_FILE).read()) == EXAMPLE  # type: ignore[union-attr]
    # AND the report is the version's model quality statistics, each metric and direction recorded
    assert version.evaluation_report_uri is not None
    assert version.evaluation_report_uri.startswith(f"s3://{BUCKET}/registered-models/{sha}/evaluation/")
    assert json.loads(read_object(version.evaluation_report_uri)) == REPORT
    assert version.metrics == {"accuracy": 0.91, "log_loss": 0.3}
    assert version.customer_metadata["direction.log_loss"] == "lower"
    assert version.dataset_version == "sensors-2024-06"
    # AND the deployer finds the schema and baseline where it looks for a version's serving files
    for name, (bucket, key) in serving_file_sources(version).items():
        expected = SCHEMA if name == "input-schema.json" else BASELINE
        assert json.loads(read_object(f"s3://{bucket}/{key}")) == expected
    # AND the image is the stack's CPU image (the platform's model server) for the dev stack's CPU
    # serving instance type, never the GPU one
    package = stack.sagemaker.describe_model_package(ModelPackageName=version.arn)
    instance_type = load_stack_config("dev").serving.instance_type
    assert package["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] == [instance_type]
    assert version.image_uri == serving_images()["cpu"]
    assert version.image_uri.endswith(f"/mlp-dev/serving-cpu:{image_tag('cpu')}")


@pytest.mark.parametrize("images", [None, {"gpu": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:y"}])
def test_a_stack_without_the_serving_image_of_its_family_is_refused_before_any_upload(
    platform: Platform, mlctl: Callable[..., Result], files: dict[str, Path], tmp_path: Path, images: Any
) -> None:
    # GIVEN stack outputs without servingImages, or with only the GPU image for the CPU dev stack
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    set_outputs(platform, bucketNames={"artifacts": BUCKET}, servingImages=images)
    model = save_torchscript(tmp_path / "model.pt")
    # WHEN a model is registered there
    result = mlctl("models", "register", str(model), "--example", str(files["example"]), *platform.target)
    # THEN it is refused after the model check, in one line naming the output, and nothing is
    # uploaded or registered
    assert result.code != 0
    (error,) = [line for line in result.err.splitlines() if not line.startswith("checked: ")]
    assert error.startswith("mlctl models register: ") and "servingImages" in error
    assert bucket_keys() == []
    assert platform.registry.list_versions(GROUP) == []


def test_paths_relative_to_the_callers_folder_work(
    stack: Platform,
    register: Callable[..., Result],
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a model.tar.gz named relative to the folder the command runs in (as a user types it)
    tarball(tmp_path / "out" / "model.tar.gz", {"model.pt": save_torchscript(tmp_path / "m.pt").read_bytes()})
    monkeypatch.chdir(tmp_path)
    # WHEN it is registered, THEN the load check (run in its own working folder) still finds it
    result = register("out/model.tar.gz", "--metrics", "evaluation.json", "--example", "example.json")
    assert result.code == 0, result.err
    assert result.out.strip() == "1"


def test_the_same_content_again_reuses_its_keys_and_other_files_get_new_ones(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path
) -> None:
    model = save_torchscript(tmp_path / "model.pt")
    options = ("--metrics", str(files["metrics"]), "--example", str(files["example"]))
    first = register(str(model), *options)
    keys = bucket_keys()
    # WHEN the same model and report are registered again
    second = register(str(model), *options)
    # THEN a second version points at the same objects, none of them uploaded again
    assert (first.code, second.code) == (0, 0), second.err
    assert bucket_keys() == keys
    assert "uploaded" not in second.err and second.err.count("already there (same content)") == 2
    one, two = stack.registry.describe(GROUP, 1), stack.registry.describe(GROUP, 2)
    assert (one.artifact_uri, one.evaluation_report_uri) == (two.artifact_uri, two.evaluation_report_uri)
    # WHEN only the report changes
    write_json(files["metrics"], {"metrics": {"accuracy": {"value": 0.95, "direction": "higher"}}})
    third = register(str(model), *options)
    # THEN the model's key is reused and the report gets a folder of its own
    three = stack.registry.describe(GROUP, 3)
    assert third.code == 0 and three.artifact_uri == one.artifact_uri
    assert three.evaluation_report_uri != one.evaluation_report_uri
    assert json.loads(read_object(str(one.evaluation_report_uri))) == REPORT  # never overwritten


CUSTOM_INFERENCE = textwrap.dedent(
    """
    import json


    def output_fn(prediction, accept):
        labels = prediction.argmax(dim=1).tolist()
        return json.dumps({"predictions": [{"label": int(l), "confidence": 1.0} for l in labels]}), accept
    """
)


def test_a_folder_in_the_sagemaker_layout_is_packed_and_registered(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN weights at the root and code/inference.py, as SageMaker's PyTorch container takes them
    folder = tmp_path / "sensor-model"
    save_torchscript(folder / "weights.pth")
    (folder / "code").mkdir()
    (folder / "code" / "inference.py").write_text(CUSTOM_INFERENCE)
    # WHEN the folder is registered with a schema (and no example: the request is generated from it)
    result = register(str(folder), "--metrics", str(files["metrics"]), "--input-schema", str(files["schema"]))
    # THEN its own output_fn answered, and the archive holds the folder's files and the checked request
    assert result.code == 0, result.err
    assert '"predictions": [{"label"' in result.err
    version = stack.registry.describe(GROUP, int(result.out))
    with tarfile.open(fileobj=io.BytesIO(read_object(str(version.artifact_uri))), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == ["code/inference.py", SAMPLE_REQUEST_FILE, "weights.pth"]
        sample = json.loads(archive.extractfile(SAMPLE_REQUEST_FILE).read())  # type: ignore[union-attr]
    assert sample == {"instances": [[0.0] * len(FEATURES)]}  # generated from the schema


def test_a_torch_export_program_is_served_by_the_default_handler(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN a torch.export program with a dynamic batch dimension
    model = linear_model()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.zeros(2, len(FEATURES)),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "sensors.pt2"))
    # WHEN it is registered alone
    result = register(str(tmp_path / "sensors.pt2"), "--example", str(files["example"]))
    # THEN the server's answer is the model's own output
    assert result.code == 0, result.err
    with torch.no_grad():
        expected = model(torch.tensor(EXAMPLE["instances"])).tolist()
    answer = json.loads(result.err.split(" with ", 1)[1].splitlines()[0])
    assert answer[0] == pytest.approx(expected[0], abs=1e-5)
    version = stack.registry.describe(GROUP, int(result.out))
    with tarfile.open(fileobj=io.BytesIO(read_object(str(version.artifact_uri))), mode="r:gz") as archive:
        assert archive.getnames() == [SAMPLE_REQUEST_FILE, "model.pt2"]
    assert "no --metrics" in result.err  # the champion gate's consequence is said


def test_a_model_in_s3_is_fetched_checked_and_registered(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="team-models")
    archive = tarball(
        tmp_path / "model.tar.gz", {"model.pt": save_torchscript(tmp_path / "m.pt").read_bytes()}
    )
    s3.upload_file(str(archive), "team-models", "sensors/v3/model.tar.gz")
    result = register("s3://team-models/sensors/v3/model.tar.gz", "--example", str(files["example"]))
    assert result.code == 0, result.err
    version = stack.registry.describe(GROUP, int(result.out))
    with tarfile.open(fileobj=io.BytesIO(read_object(str(version.artifact_uri))), mode="r:gz") as packed:
        assert packed.getnames() == ["model.pt", SAMPLE_REQUEST_FILE]


# --- refusals: one line, nothing uploaded, nothing registered ----------------------------------------

RAISING_MODEL_FN = (
    "def model_fn(model_dir):\n    raise RuntimeError('weights were saved for another architecture')\n"
)


def broken_sources(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    weights = save_torchscript(tmp_path / "weights" / "model.pt").read_bytes()
    code = b"def output_fn(prediction, accept):\n    return str(prediction.tolist()), accept\n"
    raising = tmp_path / "raising"
    save_torchscript(raising / "model.pt")
    (raising / "code").mkdir()
    (raising / "code" / "inference.py").write_text(RAISING_MODEL_FN)
    return {
        "missing file": (tmp_path / "nowhere" / "model.tar.gz", "does not exist"),
        "model_fn raising": (raising, "the model did not load: RuntimeError: weights were saved for another"),
        "no weights": (tarball(tmp_path / "a" / "model.tar.gz", {"code/inference.py": code}), "no weights"),
        "no code, no model": (tarball(tmp_path / "b" / "model.tar.gz", {"README.md": b"hi"}), "neither"),
        "a folder inside": (
            tarball(tmp_path / "c" / "model.tar.gz", {"model/model.pt": weights}),
            "under model/",
        ),
        "not a tarball": (write_json(tmp_path / "model.tar.gz", {}), "not a gzip-compressed tar archive"),
        "not torchscript": (write_json(tmp_path / "state.pt", {}), "not a TorchScript model"),
        "another kind of file": (write_json(tmp_path / "model.onnx", {}), "neither a model.tar.gz"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "model_fn raising",
        "no weights",
        "no code, no model",
        "a folder inside",
        "not a tarball",
        "not torchscript",
        "another kind of file",
    ],
)
def test_a_broken_artifact_is_refused_in_one_line_and_nothing_is_uploaded(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path, case: str
) -> None:
    source, reason = broken_sources(tmp_path)[case]
    result = register(str(source), "--metrics", str(files["metrics"]), "--example", str(files["example"]))
    assert result.code == 1
    assert reason in one_line_error(result)
    assert bucket_keys() == []
    assert stack.registry.list_versions(GROUP) == []


def test_a_request_the_model_fails_is_refused_with_the_servers_answer(
    stack: Platform, register: Callable[..., Result], tmp_path: Path
) -> None:
    model = save_torchscript(tmp_path / "model.pt")
    wrong = write_json(tmp_path / "example.json", {"instances": [[1.0, 2.0]]})  # 2 features, not 4
    result = register(str(model), "--example", str(wrong))
    assert result.code == 1
    assert "HTTP 422: input of shape [1, 2] does not fit the model" in one_line_error(result)
    assert bucket_keys() == []


def test_an_example_that_breaks_the_input_schema_is_refused(
    stack: Platform, register: Callable[..., Result], files: dict[str, Path], tmp_path: Path
) -> None:
    model = save_torchscript(tmp_path / "model.pt")
    example = write_json(tmp_path / "bad.json", {"instances": [{"temperature": "hot"}]})
    result = register(
        str(model),
        "--metrics",
        str(files["metrics"]),
        "--input-schema",
        str(files["schema"]),
        "--example",
        str(example),
    )
    assert result.code == 1
    assert "instances[0] does not match the input schema" in one_line_error(result)
    assert bucket_keys() == []


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"accuracy": 0.9}, 'it needs {"metrics"'),
        ({"metrics": {}}, '"metrics" is empty'),
        ({"metrics": {"accuracy": 0.9}}, "metric 'accuracy' must be"),
        ({"metrics": {"accuracy": {"value": "0.9", "direction": "higher"}}}, "finite number"),
        ({"metrics": {"accuracy": {"value": True, "direction": "higher"}}}, "finite number"),
        ({"metrics": {"accuracy": {"value": 0.9}}}, "needs a direction"),
        ({"metrics": {"accuracy": {"value": 0.9, "direction": "up"}}}, "not 'up'"),
        ({"metrics": {"acc uracy": {"value": 0.9, "direction": "higher"}}}, "metric name 'acc uracy'"),
        ({"metrics": {"rmse": {"value": 1.0, "direction": "lower"}}, "samples": -1}, '"samples"'),
        (
            {"metrics": {"rmse": {"value": 1.0, "direction": "lower"}}, "dataset_version": 7},
            '"dataset_version"',
        ),
    ],
)
def test_a_metrics_file_not_in_the_evaluation_format_is_refused(
    register: Callable[..., Result],
    files: dict[str, Path],
    tmp_path: Path,
    document: Any,
    problem: str,
) -> None:
    metrics = write_json(tmp_path / "metrics.json", document)
    result = register(
        str(tmp_path / "unused.pt"), "--metrics", str(metrics), "--example", str(files["example"])
    )
    assert result.code == 2
    line = one_line_error(result)
    assert "is not in the evaluation format" in line and problem in line
    assert bucket_keys() == []


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (("--metrics", "{dir}/nope.json"), "--metrics {dir}/nope.json does not exist"),
        (("--metrics", "{dir}/text.json"), "is not JSON"),
        (
            ("--metrics", "{metrics}", "--input-schema", "{dir}/text.json"),
            "--input-schema {dir}/text.json is not JSON",
        ),
        (("--input-schema", "{schema}"), "--input-schema and --baseline need --metrics"),
        (("--metrics", "{metrics}", "--baseline", "{metrics}"), "is not a baseline"),
        (("--metrics", "{metrics}", "--input-schema", "{metrics}"), "--input-schema {metrics} is invalid"),
        (("--metrics", "{metrics}"), "pass --example FILE or --input-schema FILE"),
    ],
)
def test_option_mistakes_are_one_line_usage_errors(
    register: Callable[..., Result],
    files: dict[str, Path],
    tmp_path: Path,
    options: tuple[str, ...],
    problem: str,
) -> None:
    (tmp_path / "text.json").write_text("not json")
    names = {"dir": str(tmp_path), "metrics": str(files["metrics"]), "schema": str(files["schema"])}
    model = save_torchscript(tmp_path / "model.pt")
    result = register(str(model), *(option.format(**names) for option in options))
    assert result.code == 2
    assert problem.format(**names) in one_line_error(result)
    assert bucket_keys() == []


def test_approving_a_registered_version_judges_its_metrics_in_the_directions_it_states(
    stack: Platform,
    register: Callable[..., Result],
    mlctl: Callable[..., Result],
    files: dict[str, Path],
    tmp_path: Path,
) -> None:
    # GIVEN a served version whose report says mape is better lower (a name the platform does not know)
    stack.deploy(stack.register(1, metrics={"mape": 10.0}, directions={"mape": "lower"}))
    model = save_torchscript(tmp_path / "model.pt")

    def registered(mape: float) -> str:
        report = write_json(
            tmp_path / f"mape-{mape}.json", {"metrics": {"mape": {"value": mape, "direction": "lower"}}}
        )
        result = register(str(model), "--metrics", str(report), "--example", str(files["example"]))
        assert result.code == 0, result.err
        return result.out.strip()

    # WHEN a registered version with a lower mape is approved, THEN the champion gate promotes it
    better = mlctl("models", "approve", registered(9.0), *stack.target)
    assert better.code == 0, better.err
    # WHEN one with a higher mape is approved, THEN the gate rejects it, comparing in that direction
    worse = mlctl("models", "approve", registered(11.0), *stack.target)
    assert worse.code == 1
    assert "mape 10->11 is worse by 1" in one_line_error(worse, "models approve")
