"""The layout stays what the architecture says: packages keep their private modules to themselves,
and no two modules depend on each other, however indirectly.

Read from the source with ``ast`` (nothing is imported), over every package of the repository.
Imports for type checking and imports inside functions count: both are dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra import lambda_package

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("infra", "handlers", "training_jobs", "models", "mlctl", "emulator", "policy", "bench")


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _nodes(tree: ast.AST, type_checking: bool) -> list[ast.AST]:
    """Every node; without ``type_checking``, not those under ``if TYPE_CHECKING:`` (they never run)."""
    if type_checking:
        return list(ast.walk(tree))
    found: list[ast.AST] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                found.extend(_nodes(child, type_checking))
            continue
        found.append(node)
        found.extend(_nodes(node, type_checking))
    return found


def imported_names(module: str, path: Path, known: set[str], type_checking: bool = True) -> set[str]:
    """Everything ``module`` imports: project modules by full name, other packages by top-level name.

    ``from pkg import mod`` counts as ``pkg.mod``, not as ``pkg``; imports inside functions count:
    a lazy import is still a dependency.
    """
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text()), type_checking):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {base})
    return {name if name in known else name.split(".")[0] for name in found} - {module}


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports, at run time or for type checking alone."""
    return imported_names(module, path, known) & known


def import_graph(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    modules = project_modules(root, packages)
    return {module: imports_of(module, path, set(modules)) for module, path in modules.items()}


def private_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a imports b`` where b is an underscore module of a package that does not hold a."""
    found = []
    for module, imported in graph.items():
        for target in imported:
            package, _, leaf = target.rpartition(".")
            inside = module == package or module.startswith(f"{package}.")
            if leaf.startswith("_") and not leaf.startswith("__") and not inside:
                found.append(f"{module} imports {target}")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def runtime_loads(root: Path = REPO) -> dict[str, set[str]]:
    """Per module: every module and top-level package importing it can load, through the project."""
    modules = project_modules(root)
    direct = {m: imported_names(m, path, set(modules), type_checking=False) for m, path in modules.items()}
    loads: dict[str, set[str]] = {}
    for start in modules:
        seen, pending = set(), [start]
        while pending:
            current = pending.pop()
            for name in direct.get(current, ()):
                if name not in seen:
                    seen.add(name)
                    pending.append(name)
        loads[start] = seen
    return loads


LAMBDA_PACKAGES = tuple(f"handlers.{package}" for package in lambda_package.LAMBDA_PACKAGES)
# What never runs in Lambda: the heavy stacks (the layer has powertools and pydantic only) and the
# code of other runtimes.
NOT_IN_LAMBDA = {
    "torch", "numpy", "pulumi", "pulumi_aws", "sagemaker",
    "infra", "training_jobs", "models", "mlctl", "emulator", "policy",
}  # fmt: skip
RUNTIME_RULES = [
    *((package, NOT_IN_LAMBDA | {"handlers.serving"} | (set(LAMBDA_PACKAGES) - {package}))
      for package in LAMBDA_PACKAGES),
    ("handlers.registry", NOT_IN_LAMBDA | {"handlers.serving", *LAMBDA_PACKAGES}),
    ("handlers.common", NOT_IN_LAMBDA | {"handlers.serving", "handlers.registry", *LAMBDA_PACKAGES}),
    # The serving container has torch, never the Pulumi or SageMaker SDKs or the Lambda packages.
    ("handlers.serving", {"pulumi", "pulumi_aws", "sagemaker", "infra", "training_jobs", "mlctl",
                          "emulator", "aws_lambda_powertools", *LAMBDA_PACKAGES}),
    # Training containers get only training_jobs/ and models/ (the source bundle).
    ("training_jobs", {"pulumi", "pulumi_aws", "sagemaker", "handlers", "infra", "mlctl", "emulator"}),
    ("models", {"pulumi", "pulumi_aws", "sagemaker", "boto3", "botocore", "handlers", "infra",
                "training_jobs", "mlctl", "emulator"}),
    # The Pulumi program never loads torch.
    ("infra", {"torch", "handlers.serving", "models", "emulator", "mlctl"}),
]  # fmt: skip


def violations(loads: dict[str, set[str]], package: str, forbidden: set[str]) -> list[str]:
    found = []
    for module, loaded in sorted(loads.items()):
        if module == package or module.startswith(f"{package}."):
            bad = {n for n in loaded if any(n == f or n.startswith(f"{f}.") for f in forbidden)}
            found.extend(f"{module} loads {name}" for name in sorted(bad))
    return found


@pytest.mark.parametrize(("package", "forbidden"), RUNTIME_RULES, ids=[rule[0] for rule in RUNTIME_RULES])
def test_each_runtime_loads_nothing_of_another_runtime(package: str, forbidden: set[str]) -> None:
    loads = runtime_loads()
    assert any(m.startswith(f"{package}.") for m in loads), f"no module in {package}"
    assert violations(loads, package, forbidden) == []


def test_no_module_imports_another_packages_private_module() -> None:
    assert private_imports(import_graph()) == []


def test_no_import_cycle_exists_between_modules() -> None:
    assert cycles(import_graph()) == []


# --- the checks above can fail -----------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_private_import_from_outside_its_package_is_found(tmp_path: Path) -> None:
    # GIVEN a package that uses its own private module, and another package that reaches into it
    write(tmp_path, {
        "pkg/__init__.py": "", "pkg/_secret.py": "", "pkg/public.py": "from pkg import _secret\n",
        "other/__init__.py": "", "other/user.py": "from pkg._secret import x\n",
    })  # fmt: skip
    # THEN only the reach from outside is reported
    assert private_imports(import_graph(tmp_path, ("pkg", "other"))) == ["other.user imports pkg._secret"]


def test_a_heavy_import_two_modules_away_is_found_and_a_type_checking_one_is_not(tmp_path: Path) -> None:
    # GIVEN a Lambda module importing a helper that imports torch inside a function
    write(tmp_path, {
        "handlers/__init__.py": "", "handlers/api/__init__.py": "",
        "handlers/api/handler.py": "from handlers.api import helper\n",
        "handlers/api/helper.py": "def f():\n    import torch.nn\n",
        "handlers/api/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    })  # fmt: skip
    loads = runtime_loads(tmp_path)
    # THEN both the handler and the helper load torch; the module that only type-checks with it does not
    assert violations(loads, "handlers.api", {"torch"}) == [
        "handlers.api.handler loads torch",
        "handlers.api.helper loads torch",
    ]


def test_a_cycle_is_found_through_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    # GIVEN a -> b -> c -> a (c imports a inside a function) and d <-> e (e only for type checking)
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from pkg.c import thing\n",
        "pkg/c.py": "def f():\n    from pkg import a\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n",
        "pkg/e.py": "from pkg import d\n",
        "pkg/f.py": "from pkg import a\n",
    })  # fmt: skip
    # THEN both cycles are reported, and f, which only imports, is in none
    assert cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.e"]]
