"""Benchmark (not a test): a team's project from its CSV to predictions over HTTPS, on this machine.

Times ``mlctl local up --stack example-churn`` (examples/tabular-classifier: the team's CSV -> the
generic preparer -> the team's train.py in script mode -> its evaluate.py -> gate -> register ->
approve -> deploy -> predictions through the API -> capture -> drift, then everything stopped)
beside the built-in dev loop (``--stack dev``) in the same run, alternating, each in a fresh state
folder. Reports each run's wall time and the ratio of the medians.

    .venv/bin/python -m bench.team_example --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STACKS = {"example-churn": "team project (examples/tabular-classifier)", "dev": "built-in digits loop"}
MLCTL = Path(sys.executable).with_name("mlctl")


def one_loop(stack: str) -> float:
    with tempfile.TemporaryDirectory(prefix=f"bench-{stack}-") as state_dir:
        started = time.monotonic()
        result = subprocess.run(  # noqa: S603 - our own CLI
            [str(MLCTL), "local", "up", "--stack", stack, "--state-dir", state_dir],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"mlctl local up --stack {stack} failed: {result.stderr.strip().splitlines()[-1:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {stack: [] for stack in STACKS}
    for _ in range(args.rounds):
        for stack in STACKS:  # alternating, so both see the same machine load
            times[stack].append(one_loop(stack))
    medians = {stack: statistics.median(values) for stack, values in times.items()}
    print("| loop | runs (s) | median | vs built-in |")
    print("| --- | --- | --- | --- |")
    for stack, label in STACKS.items():
        runs = ", ".join(f"{value:.1f}" for value in times[stack])
        print(f"| {label} | {runs} | {medians[stack]:.1f} s | {medians[stack] / medians['dev']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
