"""An artifact's ``code/requirements.txt``: installed at start into a private folder, importable by
the inference code; refused with a clear error when installing is off or a requirement fails.

No network: the test builds a tiny wheel itself (a zip with ``.dist-info/METADATA``, ``WHEEL`` and
``RECORD``), ships it in the artifact's ``code/wheels/`` and names it by path, as a network-isolated
endpoint needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from handlers.serving.requirements import INSTALL_ENV, failing_requirement, pip_error
from tests.functional.model_server.conftest import WAIT_S, running_server, server_env

WHEEL_NAME = "tinydep-1.0-py3-none-any.whl"
MAGIC = 4242  # what the wheel's module holds: only an installed wheel can answer it

INFERENCE = textwrap.dedent(
    """
    import json

    import tinydep  # installed from code/requirements.txt before this module is imported


    def output_fn(prediction, accept):
        return json.dumps({"outputs": prediction.tolist(), "tinydep": tinydep.MAGIC}), "application/json"
    """
)


def build_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A pure-Python wheel holding ``<name>/__init__.py`` with ``MAGIC``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"MAGIC = {MAGIC}\n".encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def artifact_with_requirements(root: Path, requirements: str, ship_wheel: bool = True) -> Path:
    """A TorchScript model, code that imports ``tinydep``, and the requirements naming it."""
    root.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1).eval()), str(root / "model.pt"))
    code = root / "code"
    code.mkdir()
    (code / "inference.py").write_text(INFERENCE)
    (code / "requirements.txt").write_text(requirements)
    if ship_wheel:
        build_wheel(code / "wheels")
    return root


def run_check(model_dir: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": [[1.0, 2.0]]}))
    return subprocess.run(
        [sys.executable, "-m", "handlers.serving.server", "check", "--model-dir", str(model_dir)]
        + ["--request", str(request)],
        capture_output=True,
        text=True,
        env=server_env(**env),
        cwd=tmp_path,
        timeout=WAIT_S * 3,
        check=False,
    )


@pytest.mark.parametrize("workers", ["1", "2"])  # spawned workers find the private folder too
def test_the_server_installs_the_requirements_and_the_inference_code_imports_them(
    tmp_path: Path, workers: str
) -> None:
    # GIVEN an artifact whose inference code imports a package only its requirements.txt provides
    model_dir = artifact_with_requirements(
        tmp_path / "model", f"# shipped with the model\n./wheels/{WHEEL_NAME}\n"
    )
    with pytest.raises(ImportError):
        __import__("tinydep")  # not in the server's own environment
    # WHEN the model server starts on it
    with running_server(model_dir, "--workers", workers, log_dir=tmp_path) as server:
        server.wait_ready()
        reply = server.invoke(json.dumps({"instances": [[1.0, 2.0]]}))
    # THEN the package was installed and imported: the answer carries its value
    assert reply.status == 200, reply.body
    assert reply.json()["tinydep"] == MAGIC
    # AND it went into a private folder of the model, never into the artifact or the environment
    assert not (model_dir / "tinydep").exists()
    assert "installed code/requirements.txt" in server.log()


def test_installing_switched_off_refuses_an_artifact_that_brings_requirements(tmp_path: Path) -> None:
    model_dir = artifact_with_requirements(tmp_path / "model", f"./wheels/{WHEEL_NAME}\n")
    # WHEN the artifact is loaded with installing switched off
    result = run_check(model_dir, tmp_path, **{INSTALL_ENV: "false"})
    # THEN it is refused in one line that names the requirement and the switch
    assert result.returncode == 3, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("model_server check:")]
    assert f"./wheels/{WHEEL_NAME}" in line
    assert f"{INSTALL_ENV}=false" in line
    assert "tinydep" not in result.stdout


def test_installing_switched_off_lets_an_artifact_without_requirements_serve(tmp_path: Path) -> None:
    # GIVEN the same artifact with an empty requirements file (comments only) and no import of tinydep
    model_dir = artifact_with_requirements(tmp_path / "model", "# nothing needed\n", ship_wheel=False)
    (model_dir / "code" / "inference.py").write_text("")
    # WHEN it is loaded with installing off
    result = run_check(model_dir, tmp_path, **{INSTALL_ENV: "false"})
    # THEN it answers (the default handlers)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 1


def test_a_failing_requirement_is_named_in_one_line(tmp_path: Path) -> None:
    # GIVEN requirements naming the shipped wheel and a wheel that is not there
    missing = "./wheels/missing-2.0-py3-none-any.whl"
    model_dir = artifact_with_requirements(tmp_path / "model", f"./wheels/{WHEEL_NAME}\n{missing}\n")
    # WHEN the artifact is loaded
    result = run_check(model_dir, tmp_path)
    # THEN the failure names the requirement that failed, not the one that was fine
    assert result.returncode == 3, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("model_server check:")]
    assert f"failed at {missing!r}" in line


def test_a_server_whose_requirements_fail_exits_without_serving(tmp_path: Path) -> None:
    model_dir = artifact_with_requirements(tmp_path / "model", "./wheels/absent-1.0-py3-none-any.whl\n")
    with running_server(model_dir, log_dir=tmp_path) as server:
        code = server.process.wait(timeout=WAIT_S * 3)
    assert code == 3
    assert "absent-1.0-py3-none-any.whl" in server.log()


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "ERROR: Could not find a version that satisfies the requirement left-pad==9.9 "
            "(from versions: none)\n"
            "ERROR: No matching distribution found for left-pad==9.9",
            "left-pad==9.9",
        ),
        ("ERROR: Invalid requirement: 'numpy>>1': Expected end or semicolon", "numpy>>1"),
        ("ERROR: something unrelated broke", None),
    ],
)
def test_the_failing_requirement_is_read_from_pips_errors(output: str, expected: str | None) -> None:
    assert failing_requirement(["six==1.16", "left-pad==9.9", "numpy>>1"], output) == expected
    assert not pip_error(output).startswith("ERROR")
