"""Where the local platform keeps its state: ``.mlctl-local/`` at the repository root.

``state.json`` is what the other ``mlctl`` commands read with ``--local`` (``mlctl.targets``):
the stack, region, the emulator's AWS URL, the API's URL and key, the stack outputs (names from
the Pulumi program) and the deployer's settings as environment variables. The emulator's own
files (``emulator.json``, ``ready.json``, logs, extracted models) live in the same folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emulator.isolation import write_private
from infra.stack_config import project_root

PROJECT_ROOT = project_root()
DEFAULT_STATE_DIR = PROJECT_ROOT / ".mlctl-local"
STATE_FILE = "state.json"


@dataclass
class LocalState:
    """``state.json``: the running local platform, as the CLI sees it."""

    stack: str
    region: str
    aws_endpoint_url: str
    api_url: str
    api_key: str | None  # None: the stack's API uses IAM auth (requests are signed)
    outputs: dict[str, Any]
    emulator_pid: int
    runtime_url: str = ""  # the local SageMaker Runtime (InvokeEndpoint), for boto3 clients
    runs: int = 0
    applied: bool = False
    versions: list[int] = field(default_factory=list)

    @classmethod
    def read(cls, state_dir: Path) -> LocalState | None:
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, state_dir: Path) -> None:
        # It holds the API key: readable by its owner only.
        write_private(state_dir / STATE_FILE, json.dumps(asdict(self), indent=2, default=str) + "\n")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (and is not a zombie we own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] != "Z"
