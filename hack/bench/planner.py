"""Planner benchmark: how long one decision takes, across a whole canary, and the status size.

Prints figures; asserts nothing. `make bench`.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.unit.world import first_version, policy_spec

from sluice.api.models import Verdict
from sluice.plan.release import plan
from sluice.plan.types import Result

STEPS = [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 30}, {"analysis": {}}, {"setWeight": 60},
         {"pause": {"duration": "1m"}}, {"analysis": {}}, {"setWeight": 100}]
OK = [Result("error-rate", Verdict.SUCCESSFUL, 0.01, "ok")]


def main() -> None:
    rollouts, passes, timings = 0, 0, []
    started = time.perf_counter()
    while time.perf_counter() - started < 5.0:
        world = first_version(policy_spec(STEPS), gateway=True)
        world.deploy("2.0.0")
        for _ in range(500):
            obs = world.observed()
            t = time.perf_counter()
            plan(obs, world.now)
            timings.append(time.perf_counter() - t)
            world.step(OK)
            passes += 1
            world.now += timedelta(seconds=5)
            if world.status.stable_version == "2.0.0":
                break
        rollouts += 1
    status_bytes = len(world.status.model_dump_json(by_alias=True, exclude_none=True))
    tracemalloc.start()
    worlds = [first_version(policy_spec(STEPS), gateway=True) for _ in range(200)]
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    timings.sort()
    print(f"rollouts walked            {rollouts} ({passes} passes) in 5s")
    print(f"plan() median              {statistics.median(timings) * 1e6:.0f} us")
    print(f"plan() p99                 {timings[int(len(timings) * 0.99)] * 1e6:.0f} us")
    print(f"status after a rollout     {status_bytes} bytes of JSON")
    print(f"memory per Release state   {current / len(worlds) / 1024:.1f} KiB (200 settled Releases)")


if __name__ == "__main__":
    main()
