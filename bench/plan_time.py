"""Benchmark of planning a stack offline (not a test): what `mlctl plan` and `mlctl local up` pay.

    .venv/bin/python bench/plan_time.py [--stack dev] [--repeats 5]

Each measure runs in a fresh interpreter, ``--repeats`` times, interleaved; medians are reported:

- ``mlctl plan`` cold: the built values cleared first (the pipeline definitions and image URIs the
  SageMaker SDK builds, the handlers zip), as for the first plan after a code change; the baseline;
- ``mlctl plan`` warm: an unchanged program, as for every later plan (target <= 3 s);
- the program alone under the mock runtime, warm (``infra.offline.run_offline``): what
  ``mlctl local up`` pays for its plan step.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILT = (REPO / "build" / "pipeline-definitions", REPO / "build" / "lambda" / ".handlers.zip.sources")


def clear_built() -> None:
    for path in BUILT:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    plan = [sys.executable, "-m", "mlctl.cli", "plan", "--stack", args.stack]
    program = [sys.executable, "-c", f"from infra.offline import run_offline; run_offline({args.stack!r})"]
    samples: dict[str, list[float]] = {"cold": [], "warm": [], "program": []}
    for _ in range(args.repeats):
        clear_built()
        samples["cold"].append(timed(plan))
        samples["warm"].append(timed(plan))
        samples["program"].append(timed(program))
    cold, warm, alone = (statistics.median(samples[key]) for key in ("cold", "warm", "program"))
    python = sys.version.split()[0]
    print(f"{args.repeats} fresh interpreters per measure, interleaved; medians; Python {python}")
    rows = [
        (f"mlctl plan --stack {args.stack}, built values cleared (baseline)", cold, ""),
        (f"mlctl plan --stack {args.stack}, unchanged program", warm, "target <= 3 s"),
        ("the program alone under the mock runtime (local up's plan)", alone, ""),
    ]
    for label, seconds, note in rows:
        print(f"{label:<62} {seconds:5.2f} s  {seconds / cold:.2f}x  {note}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
