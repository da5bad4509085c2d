"""Build the Lambda artifacts: the handlers zip and the powertools layer zip, deterministic.

``python -m infra.lambda_package [--layer build|public|none] [--out build/lambda]``. The handlers zip
holds the handler packages and what they import (found by reading their imports; torch or pulumi
refuses the build); both zips carry hash-checked bytecode, since Lambda's read-only task root would
otherwise compile every module at each cold start (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.stack_config import project_root

REPO_ROOT = project_root()
DEFAULT_OUT = REPO_ROOT / "build" / "lambda"
# Lambda handler strings -> modules: what the Pulumi program sets as each function's handler.
LAMBDA_PACKAGES = ("api", "deployer", "monitoring")  # under handlers/, one per function
HANDLER_ENTRYPOINTS = {package: f"handlers.{package}.handler.lambda_handler" for package in LAMBDA_PACKAGES}
LAMBDA_RUNTIME = "python3.11"  # the functions' runtime; bytecode is compiled for its Python
LOCAL_PACKAGES = ("handlers", "infra", "training_jobs", "models", "mlctl", "emulator")
FORBIDDEN_IMPORTS = ("torch", "pulumi", "pulumi_aws")
LAYER_REQUIREMENT = "aws-lambda-powertools[parser,tracer]"
# The closure of LAYER_REQUIREMENT minus what the Lambda Python runtime ships (used when copying
# installed packages instead of downloading).
LAYER_DISTRIBUTIONS = (
    "aws-lambda-powertools",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
    "aws-xray-sdk",
    "wrapt",
)
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "urllib3", "jmespath", "python-dateutil", "six")
PUBLIC_LAYER_ARN = (
    "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python311-x86_64:{version}"
)
PUBLIC_LAYER_VERSION = 27  # check the powertools docs for the newest before pinning another
FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
# Bumped when the layer's contents change for the same powertools version (2: with bytecode), so a
# cached layer zip of the old layout is rebuilt.
LAYER_LAYOUT_VERSION = 2


class PackagingError(Exception):
    """The artifacts cannot be built as promised (a forbidden import, a missing module)."""


@dataclass(frozen=True)
class Artifact:
    path: Path | None
    files: int
    bytes: int
    zipped_bytes: int
    note: str = ""


def handler_sources(root: Path = REPO_ROOT, entry_modules: Iterable[str] | None = None) -> list[Path]:
    """The repository files the handler modules need, found by following their imports."""
    modules = list(entry_modules or (entry.rsplit(".", 1)[0] for entry in HANDLER_ENTRYPOINTS.values()))
    found: set[Path] = set()
    pending = list(modules)
    while pending:
        path = _module_path(root, pending.pop())
        if path in found:
            continue
        found.add(path)
        # Every enclosing package's __init__ too: importing handlers.api.handler runs handlers/__init__.
        package_init = (path.parent.parent if path.name == "__init__.py" else path.parent) / "__init__.py"
        if package_init.is_file() and package_init not in found:
            pending.append(_module_name(root, package_init))
        for imported in _imports(root, path):
            top = imported.split(".")[0]
            if top in FORBIDDEN_IMPORTS:
                raise PackagingError(f"{path.relative_to(root)} imports {imported}; Lambda code must not")
            if top in LOCAL_PACKAGES:
                pending.append(imported)
    return sorted(found)


def build_handlers_zip(out_dir: Path = DEFAULT_OUT, root: Path = REPO_ROOT) -> Artifact:
    files = {path.relative_to(root).as_posix(): path for path in handler_sources(root)}
    return _write_zip(out_dir / "handlers.zip", files)


def build_layer_zip(out_dir: Path = DEFAULT_OUT, offline: bool = False) -> Artifact:
    """The powertools layer; downloads for Lambda's platform unless ``offline`` or unreachable."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "python"
        note = "downloaded for manylinux2014_x86_64 / CPython 3.11"
        if offline or not _pip_install_for_lambda(target):
            note = "copied from this environment's installed packages (no package index reachable)"
            _copy_installed(target)
        _drop_runtime_provided(target)
        files = {
            path.relative_to(target.parent).as_posix(): path
            for path in target.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }
        artifact = _write_zip(out_dir / "powertools-layer.zip", files)
    return Artifact(artifact.path, artifact.files, artifact.bytes, artifact.zipped_bytes, note)


def public_layer_arn(region: str, version: int = PUBLIC_LAYER_VERSION) -> str:
    return PUBLIC_LAYER_ARN.format(region=region, version=version)


def build_artifacts(
    out_dir: Path = DEFAULT_OUT, layer: str = "build", offline: bool = False
) -> dict[str, Artifact]:
    """Build what ``layer`` asks for; returns {"handlers": ..., "layer": ...} with paths and sizes.

    Parameters
    ----------
    out_dir: where the zips go (``build/lambda`` by default).
    layer: ``build`` (a layer zip), ``public`` (no zip; the public ARN is noted), ``none``.
    offline: build the layer from installed packages without trying the package index.
    """
    artifacts = {"handlers": build_handlers_zip(out_dir)}
    if layer == "build":
        artifacts["layer"] = build_layer_zip(out_dir, offline=offline)
    elif layer == "public":
        artifacts["layer"] = Artifact(None, 0, 0, 0, f"public layer {public_layer_arn('<region>')}")
    return artifacts


def size_report(artifacts: dict[str, Artifact]) -> str:
    rows = [f"{'artifact':<10} {'files':>6} {'bytes':>12} {'zipped':>12}  path / note"]
    for name, artifact in artifacts.items():
        where = str(artifact.path) if artifact.path else ""
        note = f"  ({artifact.note})" if artifact.note else ""
        sizes = f"{artifact.files:>6} {artifact.bytes:>12,} {artifact.zipped_bytes:>12,}"
        rows.append(f"{name:<10} {sizes}  {where}{note}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.lambda_package", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default build/lambda)")
    parser.add_argument("--layer", choices=("build", "public", "none"), default="build")
    parser.add_argument("--offline", action="store_true", help="copy installed packages, no download")
    args = parser.parse_args(argv)
    try:
        artifacts = build_artifacts(args.out, layer=args.layer, offline=args.offline)
    except PackagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(size_report(artifacts))
    return 0


def _write_zip(path: Path, files: dict[str, Path]) -> Artifact:
    """Write ``files`` (archive name -> source file) and their bytecode, deterministically.

    The build is deterministic, so a zip built from the same sources by the same Python is kept:
    every plan and preview would otherwise compile it again.
    """
    digest = hashlib.sha256(sys.version.encode())
    for name, source in sorted(files.items()):
        digest.update(f"\0{name}\0".encode() + source.read_bytes())
    stamp = path.with_name(f".{path.name}.sources")
    if path.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest():
        with zipfile.ZipFile(path) as existing:
            members = existing.infolist()
        return Artifact(path, len(members), sum(m.file_size for m in members), path.stat().st_size)
    stamp.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with (
        tempfile.TemporaryDirectory() as scratch,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
    ):
        entries = {**files, **_bytecode(files, Path(scratch))}
        for name in sorted(entries):
            data = entries[name].read_bytes()
            total += len(data)
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data, compresslevel=9)
    stamp.write_text(digest.hexdigest())
    return Artifact(path, len(entries), total, path.stat().st_size)


def _bytecode(files: dict[str, Path], scratch: Path) -> dict[str, Path]:
    """Hash-checked bytecode for each Python source in ``files``, where the runtime looks for it.

    Compiled in a fresh, isolated interpreter: marshal's output depends on the reference counts of
    the compiling process's objects, so compiling here (inside the Pulumi program, say) gave
    different bytes from run to run, and Pulumi a code change on every ``pulumi up``.
    """
    _check_bytecode_python()
    jobs = [
        (str(source), str(scratch / importlib.util.cache_from_source(name)), name)
        for name, source in sorted(files.items())
        if name.endswith(".py")
    ]
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", _COMPILE_SCRIPT],
        input=json.dumps(jobs), text=True, capture_output=True, check=True, timeout=600,
    )  # fmt: skip
    compiled = {importlib.util.cache_from_source(name): Path(target) for _, target, name in jobs}
    # A source that is not Python 3.11 (a template, a vendored py2 file) has none: never imported either.
    return {name: target for name, target in compiled.items() if target.is_file()}


# Run by ``_bytecode`` in ``python -I -S``: (source, target, name shown in tracebacks) on stdin.
_COMPILE_SCRIPT = """
import json, py_compile, sys
for source, target, name in json.load(sys.stdin):
    try:
        py_compile.compile(source, cfile=target, dfile=name, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except py_compile.PyCompileError:
        pass
"""


def _check_bytecode_python() -> None:
    wanted = LAMBDA_RUNTIME.removeprefix("python")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != wanted:
        raise PackagingError(
            f"the {LAMBDA_RUNTIME} runtime needs bytecode compiled by Python {wanted}; "
            f"this is Python {running} (run the build with the project's Python {wanted})"
        )


def _module_path(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    # ``from handlers.x import name`` names a function, not a module: its module is the parent.
    parent = module.rpartition(".")[0]
    if parent:
        return _module_path(root, parent)
    raise PackagingError(f"cannot find module {module!r} under {root}")


def _module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(root: Path, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(root, path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _pip_install_for_lambda(target: Path) -> bool:
    version = importlib.metadata.version("aws-lambda-powertools")
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target),
        "--platform", "manylinux2014_x86_64", "--only-binary=:all:",
        "--python-version", "3.11", "--implementation", "cp",
        f"{LAYER_REQUIREMENT}=={version}",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _copy_installed(target: Path) -> None:
    for name in LAYER_DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            source = Path(str(distribution.locate_file(file)))
            if file.parts[0] == ".." or not source.is_file():
                continue  # console scripts and the like live outside site-packages
            destination = target / Path(*file.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)


def _drop_runtime_provided(target: Path) -> None:
    """Remove the distributions the Lambda runtime already has (pip pulls botocore for xray)."""
    for info in target.glob("*.dist-info"):
        name = info.name.split("-")[0].replace("_", "-").lower()
        if name not in RUNTIME_PROVIDED:
            continue
        record = info / "RECORD"
        for line in record.read_text(encoding="utf-8").splitlines() if record.is_file() else []:
            (target / line.split(",")[0]).unlink(missing_ok=True)
        shutil.rmtree(info, ignore_errors=True)
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts are of no use in a layer
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


if __name__ == "__main__":
    raise SystemExit(main())
