"""The benchmarks still run: each, on a few profiles, ends with its ratio line.

Timings are not checked (these machines are noisy, and tests never assert on
wall-clock time); what is checked is that every benchmark does its work,
including its own checks of the engine's output, and prints its figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RUNS = {
    "render": (
        ["--profiles", "300", "--rounds", "1", "--memory-profiles", "2000"],
        [
            r"profiles: 300 \(300 requests\), best of 1 rounds",
            r"ratio engine/baseline: \d+\.\d\d \(target >= 0\.50\)",
            r"ratio engine/jinja floor: \d+\.\d\d",
            r"peak memory for 2,000 profiles: engine \d+ MiB, baseline \d+ MiB",
        ],
    ),
    "ledger": (
        ["--profiles", "300", "--repeat", "1"],
        [
            r"filled the ledger: 300 identities delivered in",
            r"ratio push/render: \d+\.\d\d \(target <= 1\.5: (ok|over target)\)",
        ],
    ),
    "push": (
        ["--prospects", "200", "--rounds", "1", "--concurrency", "4"],
        [
            r"requests: 200 PATCH to the fake Outreach",
            r"ratio Delivery/baseline: \d+\.\d\d \(target >= 0\.70\)",
            r"ratio push/baseline: +\d+\.\d\d \(target >= 0\.70\)",
        ],
    ),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_benchmark_runs(name: str) -> None:
    args, patterns = RUNS[name]
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for pattern in patterns:
        assert re.search(pattern, result.stdout), (pattern, result.stdout)
