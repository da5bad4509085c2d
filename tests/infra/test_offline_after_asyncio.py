"""The offline plan runs in a process where earlier code closed the event loop (asyncio.run does)."""

from __future__ import annotations

import asyncio

from infra.offline import run_offline


def test_a_plan_runs_after_asyncio_run_left_no_event_loop() -> None:
    # GIVEN a process where asyncio.run has finished (it leaves no current event loop behind)
    asyncio.run(asyncio.sleep(0))
    # WHEN the program runs under mocks THEN it declares its resources as usual
    assert run_offline("dev").resources
