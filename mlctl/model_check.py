"""Before a model is registered: load it with the model server's own code and answer one request.

The check runs ``python -m handlers.serving.server check`` in a subprocess, on the very archive that
would be uploaded: the artifact is extracted, its ``code/requirements.txt`` installed and its
inference functions loaded exactly as an endpoint's server does, then one request goes through
``input_fn -> predict_fn -> output_fn``. The subprocess gets no AWS variables (it calls no AWS).

The request is the ``--example`` file, or one instance generated from the input schema; with a
schema, each instance is validated and converted as the prediction API does before it reaches the
endpoint (``to_endpoint``), so the model answers what it will be sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from emulator.isolation import without_aws
from handlers.common.input_schema import AnyInputSchema, field_problems, instance_model_for
from mlctl.deploy_wait import sample_instance
from mlctl.model_archive import ArtifactError
from mlctl.targets import EXIT_USAGE, CommandError

CHECK_TIMEOUT_S = 900.0  # extracting, installing requirements (600 s at most) and one request
CHECK_PREFIX = "model_server check:"  # handlers/serving/server.py's one-line verdict
MAX_ANSWER_CHARS = 200


def check_request(example: Path | None, schema: AnyInputSchema | None) -> bytes:
    """The JSON body the model must answer: ``example`` as it is, or, with a schema, its instances
    (or one generated from the schema) as the prediction API would send them to the endpoint."""
    if example is None and schema is None:
        raise CommandError(
            "pass --example FILE or --input-schema FILE: the model must answer one request before it "
            "is registered",
            EXIT_USAGE,
        )
    document = _read_example(example) if example is not None else None
    if schema is None:
        return json.dumps(document).encode()
    instances = [sample_instance(schema)] if example is None else _instances(example, document)
    converted = [_to_endpoint(schema, instance, index) for index, instance in enumerate(instances)]
    return json.dumps({"instances": converted}).encode()


def check_model(archive: Path, request: bytes, timeout: float = CHECK_TIMEOUT_S) -> str:
    """Load ``archive`` in the model server's check mode and answer ``request``; returns the answer.

    Raises :class:`ArtifactError` with the server's one-line reason when either fails.
    """
    with tempfile.TemporaryDirectory(prefix="mlctl-check-") as work:
        request_file = Path(work) / "request.json"
        request_file.write_bytes(request)
        command = [sys.executable, "-m", "handlers.serving.server", "check", "--model-dir", str(archive)]
        command += ["--request", str(request_file)]
        try:
            result = subprocess.run(
                command,
                cwd=work,
                env=without_aws(os.environ),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"the model did not load and answer within {timeout:g} s") from None
    if result.returncode != 0:
        raise ArtifactError(_failure(result.returncode, result.stderr.decode(errors="replace")))
    answer = result.stdout.decode(errors="replace").strip()
    return answer if len(answer) <= MAX_ANSWER_CHARS else answer[: MAX_ANSWER_CHARS - 3] + "..."


def _failure(code: int, stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    verdict = next((ln for ln in reversed(lines) if ln.startswith(CHECK_PREFIX)), None)
    if verdict is not None:
        return verdict.removeprefix(CHECK_PREFIX).strip()
    missing = next((ln for ln in reversed(lines) if ln.startswith("ModuleNotFoundError")), None)
    if missing is not None:
        return (
            "checking the model needs the model server's dependencies here "
            f"(pip install 'ml-platform[serve]'): {missing}"
        )
    return f"the model check exited with {code}: {lines[-1] if lines else 'no output'}"


def _read_example(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CommandError(f"--example {path} does not exist", EXIT_USAGE) from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"--example {path} is not JSON: {exc}", EXIT_USAGE) from None


def _instances(path: Path, document: Any) -> list[Any]:
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise CommandError(f'--example {path} needs {{"instances": [...]}} to be checked against the schema')
    return instances


def _to_endpoint(schema: AnyInputSchema, instance: Any, index: int) -> Any:
    """What the prediction API sends the endpoint for ``instance`` (validated as it validates it)."""
    from pydantic import ValidationError  # noqa: PLC0415 - only a schema needs it

    try:
        validated = instance_model_for(schema).model_validate(instance)
    except ValidationError as exc:
        problems = "; ".join(f"{p.field}: {p.problem}" for p in field_problems(exc, root="instance"))
        raise CommandError(
            f"the example's instances[{index}] does not match the input schema: {problems}"
        ) from None
    return schema.to_endpoint(validated)
