"""An artifact's ``code/requirements.txt``, installed at start as the SageMaker PyTorch container does.

The container runs ``pip install -r code/requirements.txt`` before it imports the inference module.
Here the packages go into a private folder of the model (``pip install --target``), which is put at
the front of ``sys.path``, so one model's requirements never change the server's own environment.
pip runs in ``code/``: a requirement may name a wheel shipped in the artifact by a relative path
(``./wheels/x-1.0-py3-none-any.whl``), which is the way to go on a network-isolated endpoint.

Environment:

- ``MLP_INSTALL_REQUIREMENTS``: ``false`` (or ``0``, ``no``, ``off``) switches installing off; an
  artifact that brings requirements is then refused with a clear error instead of being served
  without them (default: on).
- ``MLP_REQUIREMENTS_TIMEOUT_S``: the longest the install may take, in seconds (default 600).

Every failure is a :class:`RequirementsError` with a one-line message naming the requirement.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

INSTALL_ENV = "MLP_INSTALL_REQUIREMENTS"
TIMEOUT_ENV = "MLP_REQUIREMENTS_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
REQUIREMENTS_FILE = "requirements.txt"
CODE_DIR = "code"
_OFF = frozenset({"false", "0", "no", "off"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


class RequirementsError(Exception):
    """The artifact's requirements cannot be installed; the message says which and why."""


def requirements_file(model_dir: Path) -> Path | None:
    """``code/requirements.txt`` of the extracted artifact, or None when it brings none."""
    path = model_dir / CODE_DIR / REQUIREMENTS_FILE
    return path if path.is_file() and requirement_lines(path) else None


def requirement_lines(path: Path) -> list[str]:
    """The requirements the file names (comments, blank lines and pip options left out)."""
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def install_requirements(model_dir: Path, target: Path, environ: Mapping[str, str] | None = None) -> bool:
    """Install the artifact's requirements into ``target`` and put it first on ``sys.path``.

    Returns False when the artifact brings no requirements (nothing is done). Raises
    :class:`RequirementsError` when installing is switched off, fails or takes too long.
    """
    env = os.environ if environ is None else environ
    path = requirements_file(model_dir)
    if path is None:
        return False
    if env.get(INSTALL_ENV, "").strip().lower() in _OFF:
        raise RequirementsError(
            f"{CODE_DIR}/{REQUIREMENTS_FILE} names {', '.join(requirement_lines(path))}, but installing "
            f"requirements is switched off ({INSTALL_ENV}={env[INSTALL_ENV]})"
        )
    _pip_install(path, target, _timeout(env))
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return True


def _pip_install(path: Path, target: Path, timeout: float) -> None:
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    command += ["--target", str(target), "-r", path.name]
    try:
        result = subprocess.run(
            command, cwd=path.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RequirementsError(
            f"installing {CODE_DIR}/{REQUIREMENTS_FILE} took longer than {timeout:g} s ({TIMEOUT_ENV})"
        ) from None
    if result.returncode != 0:
        output = f"{result.stdout}\n{result.stderr}"
        failing = failing_requirement(requirement_lines(path), output)
        raise RequirementsError(
            f"installing {CODE_DIR}/{REQUIREMENTS_FILE} failed at {failing!r}: {pip_error(output)}"
            if failing
            else f"installing {CODE_DIR}/{REQUIREMENTS_FILE} failed: {pip_error(output)}"
        )


def failing_requirement(requirements: list[str], pip_output: str) -> str | None:
    """The requirement pip's errors name (by its whole line, else its project name), if any."""
    errors = "\n".join(line for line in pip_output.splitlines() if line.startswith(("ERROR", "WARNING")))
    for requirement in requirements:
        if requirement in errors:
            return requirement
    for requirement in requirements:
        name = _NAME.match(requirement)
        if name and re.search(rf"\b{re.escape(name.group())}\b", errors, re.IGNORECASE):
            return requirement
    return None


def pip_error(pip_output: str) -> str:
    """pip's last error line (what went wrong), without its ``ERROR:`` prefix."""
    errors = [line for line in pip_output.splitlines() if line.startswith("ERROR")]
    last = errors[-1] if errors else next((ln for ln in reversed(pip_output.splitlines()) if ln.strip()), "")
    return " ".join(last.removeprefix("ERROR:").split()) or "pip exited with an error"


def _timeout(env: Mapping[str, str]) -> float:
    raw = env.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise RequirementsError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise RequirementsError(f"{TIMEOUT_ENV} must be positive; got {raw}")
    return value
