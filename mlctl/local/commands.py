"""``mlctl local up`` and ``mlctl local down``: the whole platform on this machine.

``up`` starts the emulator (:mod:`emulator.server`) unless one from an earlier ``up --keep``
still runs, creates the stack's resources in it from the Pulumi program's plan (first time only),
and runs the loop (:mod:`mlctl.local.workflow`). A second ``up`` against a kept platform puts new
data, trains and registers the next version, and the endpoint switches to it blue/green.
Without ``--keep`` everything started is stopped at the end; ``down`` stops a kept platform (or
the remains of a failed ``up``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator import processes
from emulator.isolation import EMULATOR_CREDENTIALS, user_aws_hidden, without_user_aws
from mlctl.local.state import DEFAULT_STATE_DIR, PROJECT_ROOT, LocalState, process_alive

if TYPE_CHECKING:
    from collections import Counter

    from emulator.server import EmulatorConfig
    from infra.offline import Plan
    from infra.stack_config import ApiAuth

EMULATOR_START_TIMEOUT_S = 60.0
EMULATOR_STOP_TIMEOUT_S = 30.0
DEFAULT_EPOCHS = 4
API_STAGE_ENV = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_DEV": "false"}
LOCK_FILE = "up.lock"
API_METHOD_TYPE = "aws:apigateway/method:Method"


class LocalError(RuntimeError):
    """A step of ``local up``/``down`` failed; the message says what to do."""


class PlatformBusyError(LocalError):
    """Another ``local up`` is running on the same state folder; nothing of it may be touched."""


def add_local_parser(commands: Any) -> None:
    local = commands.add_parser(
        "local",
        help="run the whole platform on this machine (AWS emulated on loopback)",
        description="The platform's loop on this machine: emulated AWS, real training, serving and API.",
    )
    actions = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start (or reuse) the local platform and run the loop once")
    up.add_argument("--stack", default="dev", help="stack config to use (Pulumi.<stack>.yaml; default dev)")
    up.add_argument("--keep", action="store_true", help="leave the API and endpoint serving afterwards")
    up.add_argument("--manual-approval", action="store_true", help="stop after registering; approve yourself")
    up.add_argument(
        "--platform-only",
        action="store_true",
        help="create the stack's resources and keep them serving, train nothing (e.g. before "
        "`mlctl models register --local`); implies --keep",
    )
    up.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs (built-in tasks: {DEFAULT_EPOCHS}; a team's stack: its configured value)",
    )
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=argparse.SUPPRESS)
    up.set_defaults(handler=_up)
    down = actions.add_parser("down", help="stop everything `local up` started")
    down.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=argparse.SUPPRESS)
    down.set_defaults(handler=_down)


def _say(message: str) -> None:
    print(message, flush=True)


def _step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}", flush=True)


# --- up ------------------------------------------------------------------------------------------------


def _missing_dependencies() -> list[str]:
    """The optional packages local mode needs that are not installed."""
    import importlib.util  # noqa: PLC0415

    wanted = {"moto": "moto[server]", "flask": "moto[server]", "matplotlib": "matplotlib", "torch": "torch"}
    return sorted({package for module, package in wanted.items() if importlib.util.find_spec(module) is None})


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    state_dir: Path = args.state_dir
    missing = _missing_dependencies()
    if missing:
        print(
            f"mlctl local up: missing {', '.join(missing)}; install the local extra: "
            ".venv/bin/pip install -e '.[infra,train,lambda,serve,local]' (`make install` does it)",
            file=sys.stderr,
        )
        return 2
    try:
        state = local_up(
            args.stack,
            state_dir,
            manual_approval=args.manual_approval,
            epochs=args.epochs,
            platform_only=args.platform_only,
        )
    except PlatformBusyError as exc:
        print(f"mlctl local up: {exc}", file=sys.stderr)
        return 1
    except LocalError as exc:
        print(f"mlctl local up: {exc}", file=sys.stderr)
        if not args.keep:
            stop_platform(state_dir, quiet=True)
        elif _platform_running(state_dir):
            print(f"  the platform is left running; `mlctl local down` stops it (logs: {state_dir}/logs)")
        return 1
    elapsed = time.monotonic() - started
    if args.keep or args.platform_only:
        pipeline, endpoint = state.outputs.get("trainingPipelineName"), state.outputs.get("endpointName")
        _say(
            f"\nThe platform keeps serving ({elapsed:.0f} s). Try:\n"
            f"{_api_call_hint(state)}"
            f"  .venv/bin/mlctl models list --local\n"
            f"  .venv/bin/mlctl train --local --epochs 4  # the deployed pipeline, run by the emulator\n"
            f"  .venv/bin/mlctl local up --keep  # new data: version {len(state.versions) + 1}, blue/green\n"
            f"  .venv/bin/mlctl local down\n"
            f"Any AWS client reaches the emulated platform (no credentials of yours are used):\n"
            f"  export AWS_ENDPOINT_URL={state.aws_endpoint_url} AWS_DEFAULT_REGION={state.region}\n"
            f"  export AWS_ACCESS_KEY_ID={EMULATOR_CREDENTIALS.access_key_id}"
            f" AWS_SECRET_ACCESS_KEY={EMULATOR_CREDENTIALS.secret_access_key}\n"
            f"  aws sagemaker list-pipeline-executions --pipeline-name {pipeline}\n"
            f"  aws sagemaker-runtime invoke-endpoint --endpoint-name {endpoint}"
            f" --content-type application/json --cli-binary-format raw-in-base64-out"
            f" --body '{{\"instances\": [[0]]}}' /dev/stdout\n"
            f"API: {state.api_url}  {_api_auth_line(state)}"
        )
    else:
        stop_platform(state_dir, quiet=True)
        _say(f"\nDone in {elapsed:.0f} s; everything it started is stopped (`--keep` leaves it serving).")
    return 0


def _api_call_hint(state: LocalState) -> str:
    """How to call the kept API: with its key, or (IAM auth) signed with the emulator's key pair."""
    if state.api_key:
        return f"  curl -s {state.api_url}/v1/health -H 'x-api-key: {state.api_key}'\n"
    pair = EMULATOR_CREDENTIALS
    return (
        f"  curl -s {state.api_url}/v1/health --aws-sigv4 'aws:amz:{state.region}:execute-api'"
        f" --user '{pair.access_key_id}:{pair.secret_access_key}'  # IAM auth: SigV4-signed\n"
        f"  .venv/bin/mlctl invoke --local --file request.json  # POST /v1/predict, signed for you\n"
    )


def _api_auth_line(state: LocalState) -> str:
    if state.api_key:
        return f"key: {state.api_key}"
    pair = EMULATOR_CREDENTIALS
    return (
        f"auth: IAM (SigV4, service execute-api, region {state.region}, "
        f"key pair {pair.access_key_id}/{pair.secret_access_key})"
    )


def local_up(
    stack: str, state_dir: Path, *, manual_approval: bool, epochs: int | None, platform_only: bool = False
) -> LocalState:
    """Run the loop once; returns the platform's state (still running). Raises :class:`LocalError`
    with a one-line message; the traceback goes to ``logs/up.log`` under ``state_dir``."""
    from infra.stack_config import StackConfigError, UnknownStackError  # noqa: PLC0415

    try:
        # The loop runs handler code in this process too: none of it may see the user's AWS identity.
        with _only_up(state_dir), user_aws_hidden():
            return _run_loop(
                stack, state_dir, manual_approval=manual_approval, epochs=epochs, platform_only=platform_only
            )
    except (LocalError, StackConfigError, UnknownStackError):
        raise
    except Exception as exc:  # one line for the user, the whole story in the log
        log = state_dir / "logs" / "up.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            traceback.print_exc(file=out)
        raise LocalError(f"{type(exc).__name__}: {exc} (details: {log})") from exc


@contextlib.contextmanager
def _only_up(state_dir: Path) -> Iterator[None]:
    """Hold the state folder's lock for the whole ``up``: a second one at the same time is refused."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise PlatformBusyError(
                f"another `mlctl local up` (pid {holder}) is running on {state_dir}; wait for it to end"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _platform_running(state_dir: Path) -> bool:
    state = LocalState.read(state_dir)
    return state is not None and process_alive(state.emulator_pid)


def _run_loop(
    stack: str, state_dir: Path, *, manual_approval: bool, epochs: int | None, platform_only: bool = False
) -> LocalState:
    # The handlers' structured INFO logs would bury the steps' own lines; warnings still show.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from emulator.invocations import INVOCATIONS_FILE  # noqa: PLC0415
    from emulator.server import lambda_log_dir  # noqa: PLC0415
    from infra.offline import run_offline  # noqa: PLC0415
    from infra.stack_config import load_stack_config  # noqa: PLC0415
    from mlctl.local.workflow import StackNames, Workflow  # noqa: PLC0415

    _step(1, f"plan the {stack} stack (the Pulumi program under its mock runtime)")
    config = load_stack_config(stack)
    epochs = _epochs_for(config, epochs)
    plan = run_offline(stack)
    names = StackNames.from_outputs(plan.outputs)
    function_env = _function_environments(plan)
    api_auth = planned_api_auth(plan, config.api.auth)
    _say(f"{len(plan.resources)} resources; endpoint {names.endpoint}, registry {names.group}")

    _step(2, "start the local AWS emulator, SageMaker Runtime and API Gateway")
    state = _reuse_or_start(stack, state_dir, names, function_env, api_auth)
    _say(f"AWS (emulated) {state.aws_endpoint_url}; API {state.api_url}")
    if not state.applied:
        _create_resources(plan, state, names)
        state.applied = True
        state.write(state_dir)
    if platform_only:
        _say("the stack's resources are in place; nothing trained (--platform-only)")
        return state

    state.runs += 1
    run = state.runs
    # A fresh folder per attempt: a failed one never leaves files the next attempt trips over.
    work_dir = Path(tempfile.mkdtemp(prefix=f"run-{run}-", dir=_made(state_dir / "work")))
    invocations = lambda_log_dir(state_dir) / INVOCATIONS_FILE
    flow = Workflow(
        config, names, state.aws_endpoint_url, work_dir, _say, run=run, epochs=epochs, invocations=invocations
    )

    _step(3, f"new data (run {run})")
    flow.put_raw_data()

    _step(
        4, "the training pipeline: prepare -> train -> evaluate -> gate -> register (the deployed definition)"
    )
    pipeline_run = flow.run_pipeline()
    curve = flow.save_training_curve(pipeline_run, state_dir / f"training-curve-run{run}.png")
    if curve is not None:
        _say(f"training curve: {curve}")
    version = pipeline_run.version
    state.versions.append(int(version.version))
    state.write(state_dir)

    _step(5, "champion vs challenger -> approve")
    if manual_approval:
        _say(
            f"registered {version.label} and stopped before deploying (--manual-approval). Approve with\n"
            f"  .venv/bin/mlctl models approve {version.version} --local --reason '...'\n"
            f"and its event runs the deployer in the emulator (logs: {lambda_log_dir(state_dir)})"
        )
        return state
    flow.champion_gate(pipeline_run)
    approved = flow.approve(version)

    _step(6, "deploy: the approval's event runs the deployer Lambda, the endpoint's events its verification")
    flow.deploy(approved)

    _step(7, "infer over HTTP: API Gateway -> the API Lambda handler -> SageMaker Runtime -> model server")
    answers = flow.send_sample_requests(state.api_url, state.api_key, pipeline_run.dataset_dir)

    _step(8, "capture -> drift check")
    flow.wait_for_capture(len(answers))
    flow.drift_check(function_env.get("drift-monitor", {}))
    return state


def _epochs_for(config: Any, asked: int | None) -> int | None:
    """What to train: as asked; for a built-in task, enough to pass the dev gate quickly; for a
    team's stack, its configured hyperparameters (None: the pipeline's default)."""
    if asked is not None or config.training.builtin_task is None:
        return asked
    return DEFAULT_EPOCHS


def _function_environments(plan: Any) -> dict[str, dict[str, str]]:
    """Each Lambda's environment as the program declares it, by function role (``predict-api``...)."""
    environments: dict[str, dict[str, str]] = {}
    for resource in plan.of_type("aws:lambda/function:Function"):
        variables = (resource.inputs.get("environment") or {}).get("variables") or {}
        role = resource.name.split("-", 1)[1] if "-" in resource.name else resource.name
        environments[role] = {str(k): str(v) for k, v in variables.items()}
    return environments


def planned_api_auth(plan: Plan, stack_auth: ApiAuth) -> ApiAuth:
    """The authorization the program gives the API's methods (``AWS_IAM``: IAM, else the API key):
    local mode serves what would be deployed. ``stack_auth`` (``api.auth``) if it plans no method."""
    from infra.stack_config import ApiAuth  # noqa: PLC0415

    planned = {str(method.inputs.get("authorization")) for method in plan.of_type(API_METHOD_TYPE)}
    if not planned:
        return stack_auth
    if len(planned) > 1:  # the local gateway authorizes every method the same way
        raise LocalError(f"the API's methods mix authorizations {sorted(planned)}; local mode serves one")
    return ApiAuth.IAM if planned == {"AWS_IAM"} else ApiAuth.API_KEY


def emulator_config(names: Any, function_env: dict[str, dict[str, str]], api_auth: ApiAuth) -> EmulatorConfig:
    """What the emulator starts with: free ports, the API Lambda's environment and the planned API's
    auth: a fresh API key, or none under IAM auth (requests are signed instead)."""
    from emulator.ports import free_port  # noqa: PLC0415
    from emulator.server import EmulatorConfig  # noqa: PLC0415
    from infra.stack_config import ApiAuth  # noqa: PLC0415

    return EmulatorConfig(
        region=names.region,
        moto_port=free_port(),
        runtime_port=free_port(),
        api_port=free_port(),
        api_key=None if api_auth is ApiAuth.IAM else secrets.token_urlsafe(24),
        api_auth=api_auth,
        capture_uri=names.capture_uri,
        api_env={**function_env.get("predict-api", {}), **API_STAGE_ENV},
    )


def _reuse_or_start(
    stack: str, state_dir: Path, names: Any, function_env: dict[str, dict[str, str]], api_auth: ApiAuth
) -> LocalState:
    from infra.stack_config import ApiAuth  # noqa: PLC0415

    state = LocalState.read(state_dir)
    if state is not None and process_alive(state.emulator_pid) and (state_dir / "ready.json").is_file():
        if state.stack != stack:
            raise LocalError(f"a local platform for stack {state.stack!r} runs; `mlctl local down` first")
        if (state.api_key is None) != (api_auth is ApiAuth.IAM):
            raise LocalError(
                f"the running local platform's API auth is not the plan's ({api_auth}); "
                "`mlctl local down` first"
            )
        _say("reusing the running local platform (from an earlier `up --keep`)")
        return state
    if state is not None or (state_dir / "emulator.json").exists():
        stop_platform(state_dir, quiet=True)  # the remains of an earlier run
    return _start_emulator(stack, state_dir, names, function_env, api_auth)


def _start_emulator(
    stack: str, state_dir: Path, names: Any, function_env: dict[str, dict[str, str]], api_auth: ApiAuth
) -> LocalState:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    emulator = emulator_config(names, function_env, api_auth)
    emulator.write(state_dir)
    log = (state_dir / "logs" / "emulator.log").open("ab")
    ledger = state_dir / processes.LEDGER_FILE
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator.server", str(state_dir)],
        cwd=PROJECT_ROOT,
        # Nothing the emulator starts gets the user's AWS identity; everything it starts is recorded.
        env={
            **without_user_aws(os.environ),
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            processes.LEDGER_ENV: str(ledger),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives this command with --keep; `down` stops its group
    )
    processes.record(process.pid, "emulator", ledger)
    ready = _wait_ready(state_dir, process)
    state = LocalState(
        stack=stack,
        region=names.region,
        aws_endpoint_url=ready["aws_endpoint_url"],
        api_url=ready["api_url"],
        api_key=emulator.api_key,
        outputs={},
        emulator_pid=process.pid,
        runtime_url=ready["runtime_url"],
    )
    state.write(state_dir)
    return state


def _wait_ready(state_dir: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT_S
    ready = state_dir / "ready.json"
    while time.monotonic() < deadline:
        if ready.is_file():
            return dict(json.loads(ready.read_text()))
        if process.poll() is not None:
            raise LocalError(
                f"the emulator exited with {process.returncode}; see {state_dir / 'logs' / 'emulator.log'}"
            )
        time.sleep(0.2)
    raise LocalError(f"the emulator did not start in {EMULATOR_START_TIMEOUT_S:.0f} s")


def _create_resources(plan: Any, state: LocalState, names: Any) -> None:
    """The plan's resources the emulator holds (``emulator.provision``): the data lake, the training
    code, the registry group, the pipeline, the alert topic, the Lambda functions with their roles,
    the EventBridge rules, the CloudWatch alarms and dashboard, and the REST API's declaration."""
    from emulator.clients import emulator_client  # noqa: PLC0415
    from emulator.provision import LocalApplier  # noqa: PLC0415

    def client(service: str) -> Any:
        return emulator_client(service, state.region, state.aws_endpoint_url)

    services = ("s3", "kms", "sagemaker", "sns", "iam", "lambda", "events", "cloudwatch", "apigateway")
    clients = {service: client(service) for service in services}
    applied = LocalApplier(clients, state.region).apply(plan)
    state.outputs = {
        key: applied.resolve(value) for key, value in plan.outputs.items() if key not in {"apiUrl"}
    }
    state.outputs["apiUrl"] = state.api_url
    _say(
        f"created {len(applied.created)} resources in the emulator; {_not_emulated(applied.skipped_types())}"
    )


def _not_emulated(types: Counter[str]) -> str:
    """``not emulated (7): 5 cloudwatch/logGroup, 1 lambda/layerVersion, ...`` (most first)."""
    if not types:
        return "every resource is emulated"
    named = ", ".join(f"{count} {kind.split(':')[1]}" for kind, count in types.most_common())
    return f"not emulated ({sum(types.values())}): {named}"


# --- down ----------------------------------------------------------------------------------------------


def _down(args: argparse.Namespace) -> int:
    stopped = stop_platform(args.state_dir, quiet=False)
    if not stopped:
        _say("no local platform is running")
    return 0


def stop_platform(state_dir: Path, *, quiet: bool) -> bool:
    """Stop the emulator (it stops its model servers) and forget the state; True if one ran."""
    state = LocalState.read(state_dir)
    pid = state.emulator_pid if state else _pid_from_ready(state_dir)
    stopped = False
    if pid is not None and process_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or not ours
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + EMULATOR_STOP_TIMEOUT_S
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone, or not ours
                os.killpg(pid, signal.SIGKILL)
        stopped = True
        if not quiet:
            _say(f"stopped the local platform (emulator {pid} and its model servers)")
    # Whatever the emulator started and could not stop itself (it was killed, say).
    leftover = processes.stop_recorded(state_dir / processes.LEDGER_FILE)
    if leftover:
        stopped = True
        if not quiet:
            _say(
                "stopped what the platform had left running: "
                + ", ".join(f"{e.role} {e.pid}" for e in leftover)
            )
    for name in ("state.json", "ready.json", "emulator.json"):
        (state_dir / name).unlink(missing_ok=True)
    shutil.rmtree(state_dir / "hosting", ignore_errors=True)
    shutil.rmtree(state_dir / "work", ignore_errors=True)
    return stopped


def _pid_from_ready(state_dir: Path) -> int | None:
    try:
        return int(json.loads((state_dir / "ready.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
