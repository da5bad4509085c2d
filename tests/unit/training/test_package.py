"""package: the serving archive's layout, self-contained loading, immutable artifact keys."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from handlers.serving import inference
from training_jobs import package, sample_request, serving_code

EXPECTED_MEMBERS = [
    "baseline.json",
    "code/inference.py",
    "code/models/__init__.py",
    "code/models/architectures.py",
    "code/models/base.py",
    "code/models/persistence.py",
    "code/models/tabular.py",
    "code/models/text.py",
    "code/models/vision.py",
    "code/requirements.txt",
    "code/sample-request.json",
    "model.pt",
    "model_config.json",
    "training_history.json",
    "training_metadata.json",
]
REQUESTS = {
    "digits": ("application/json", json.dumps({"instances": [[0.0] * 20 + [16.0] * 24 + [0.0] * 20]})),
    "diabetes": ("text/csv", "59,2,32.1,101,157,93.2,38,4,4.86,87\n48,1,21.6,87,183,103.2,70,3,3.89,69\n"),
    "spam": ("application/json", json.dumps(["claim your free prize now", "lunch meeting tomorrow"])),
}
BUCKET = "ml-artifacts-test"
SHA = "ab" * 32


@pytest.fixture(scope="module")
def archives(trained, tmp_path_factory):
    """task -> model.tar.gz built from the trained model."""
    out = tmp_path_factory.mktemp("archives")
    return {
        task: package.build_model_archive(trained(task).model_dir, out / task / "model.tar.gz")
        for task in REQUESTS
    }


def test_archive_layout_is_what_the_pytorch_container_serves(archives):
    # GIVEN a packaged model
    # WHEN its members are listed
    with tarfile.open(archives["digits"]) as tar:
        members = sorted(tar.getnames())
        handler = tar.extractfile("code/inference.py").read()
    # THEN weights and config sit at the root, the handler and its code under code/
    assert members == EXPECTED_MEMBERS
    assert handler == serving_code._handler_source().read_bytes()
    assert b"def transform_fn" not in handler


def test_archive_bytes_are_reproducible(trained, tmp_path):
    # GIVEN the same model packaged twice
    first = package.build_model_archive(trained("digits").model_dir, tmp_path / "a.tar.gz")
    second = package.build_model_archive(trained("digits").model_dir, tmp_path / "b.tar.gz")
    # THEN the archives are identical, so the content hash in the key identifies the content
    assert package.sha256_of(first) == package.sha256_of(second)


SERVE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    # Prove self-containment: drop the editable install's finder and any path into the repo.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower()
                        and "editable" not in getattr(f, "__name__", "").lower()]
    sys.path[:] = [p for p in sys.path if p not in ("", ".", sys.argv[1])]
    results = {}
    for task, model_dir, content_type, body in json.loads(sys.argv[2]):
        sys.path.insert(0, model_dir + "/code")  # what the SageMaker container does
        for name in [m for m in sys.modules if m == "models" or m.startswith(("models.", "inference"))]:
            del sys.modules[name]
        import inference, models
        assert models.__file__.startswith(model_dir), models.__file__
        model = inference.model_fn(model_dir)
        body_out, out_type = inference.output_fn(
            inference.predict_fn(inference.input_fn(body, content_type), model), "application/json")
        results[task] = {"body": json.loads(body_out), "type": out_type}
        sys.path.remove(model_dir + "/code")
    try:
        import training_jobs
        results["training_jobs_importable"] = True
    except ImportError:
        results["training_jobs_importable"] = False
    print(json.dumps(results))
    """
)


def serve_without_the_repository(jobs: list[list[str]], cwd: Path) -> dict:
    """Run SERVE_SCRIPT over ``jobs`` in a fresh interpreter that cannot import the repository."""
    repo = str(serving_code._handler_source().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, repo, json.dumps(jobs)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_extracted_archive_serves_without_the_repository(archives, trained, tmp_path):
    # GIVEN each archive extracted as the container would
    jobs = []
    for task, archive in archives.items():
        target = tmp_path / task
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        jobs.append([task, str(target), *REQUESTS[task]])
    # WHEN a fresh interpreter without the repository on its path runs the four functions
    results = serve_without_the_repository(jobs, tmp_path)
    # THEN it could not see the training code, and answers as the in-repo handler does
    assert results.pop("training_jobs_importable") is False
    for task, _extracted, content_type, body in jobs:
        served = inference.model_fn(str(trained(task).model_dir))
        prediction = inference.predict_fn(inference.input_fn(body, content_type), served)
        expected, _ = inference.output_fn(prediction, None)
        assert results[task] == {"body": json.loads(expected), "type": "application/json"}
    assert results["spam"]["body"]["predictions"][0]["label"] == "spam"
    assert results["spam"]["body"]["predictions"][1]["label"] == "ham"
    assert len(results["diabetes"]["body"]["predictions"]) == 2


def test_artifact_keys_are_versioned_and_never_collide():
    # GIVEN one model, one dataset version
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    key = package.artifact_key("digits-cnn", "9b31f05a", SHA, now)
    # THEN the key carries name, version, UTC time and short hash...
    assert key == "models/digits-cnn/9b31f05a/20260102T030405000000Z-abababababab/model.tar.gz"
    # ...a later run or different bytes get another key, and local times are written in UTC
    assert package.artifact_key("digits-cnn", "9b31f05a", SHA, now + timedelta(microseconds=1)) != key
    assert package.artifact_key("digits-cnn", "9b31f05a", "cd" * 32, now) != key
    local = now.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    assert package.artifact_key("digits-cnn", "9b31f05a", SHA, local) == key


@pytest.mark.parametrize(
    ("name", "version", "created"),
    [
        ("Digits CNN", "9b31", datetime(2026, 1, 1, tzinfo=UTC)),
        ("digits-cnn", "../x", datetime(2026, 1, 1, tzinfo=UTC)),
        ("digits-cnn", "9b31", datetime(2026, 1, 1)),  # noqa: DTZ001 - the naive time under test
    ],
)
def test_artifact_key_refuses_unsafe_parts(name, version, created):
    # GIVEN a name with spaces, a path-like version, or a naive timestamp
    # WHEN a key is requested THEN it is refused
    with pytest.raises(ValueError):
        package.artifact_key(name, version, SHA, created)


def test_upload_refuses_to_overwrite_an_existing_key(aws_credentials, archives, tmp_path):
    with mock_aws():
        # GIVEN an uploaded artifact
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        key = "models/digits-cnn/v1/20260101T000000000000Z-abababababab/model.tar.gz"
        uri = package.upload_model_archive(s3, archives["digits"], BUCKET, key)
        assert uri == f"s3://{BUCKET}/{key}"
        # WHEN a different archive is uploaded to the same key
        other = tmp_path / "other.tar.gz"
        other.write_bytes(b"not the same model")
        with pytest.raises(package.ArtifactExistsError):
            package.upload_model_archive(s3, other, BUCKET, key)
        # THEN the stored artifact is unchanged
        stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert stored == archives["digits"].read_bytes()


def test_conditional_put_closes_the_race_after_the_existence_check(aws_credentials, archives, monkeypatch):
    with mock_aws():
        # GIVEN another writer stored the key after our head_object check said it was free
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="k/model.tar.gz", Body=b"winner")
        monkeypatch.setattr(package, "_object_exists", lambda *_: False)
        # WHEN we upload THEN S3 itself refuses (If-None-Match) and the winner's bytes stay
        with pytest.raises(package.ArtifactExistsError, match="concurrently"):
            package.upload_model_archive(s3, archives["digits"], BUCKET, "k/model.tar.gz")
        assert s3.get_object(Bucket=BUCKET, Key="k/model.tar.gz")["Body"].read() == b"winner"


def test_the_training_jobs_model_folder_serves_as_is(trained, tmp_path):
    # GIVEN the folder training wrote (SageMaker tars SM_MODEL_DIR into model.tar.gz as it is)
    jobs = [[task, str(trained(task).model_dir), *REQUESTS[task]] for task in REQUESTS]
    for _task, model_dir, *_ in jobs:
        written = {
            p.relative_to(model_dir).as_posix(): p.read_bytes()
            for p in Path(model_dir).rglob("code/**/*")
            if p.is_file()
        }
        sample = {sample_request.SAMPLE_REQUEST_FILE: sample_request.sample_request(Path(model_dir))}
        assert written == {**serving_code.serving_code_entries(), **sample}
    # WHEN a fresh interpreter without the repository serves straight from it
    results = serve_without_the_repository(jobs, tmp_path)
    # THEN every task answers: no repack step between training and serving
    assert results.pop("training_jobs_importable") is False
    assert set(results) == set(REQUESTS)
