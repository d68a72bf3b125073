"""``bench/bench_pipeline.py`` runs end to end and ends with the line the performance targets are read from."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.scripts


def test_bench_pipeline_prints_its_breakdown_and_the_ratio_line():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_pipeline.py"), "--repeats", "1", "--image-tokens", "16",
         "--new-tokens", "3", "--threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    ratio = r"(\d+\.\d{3})"
    names = ("vea/base", "compare/base", "compare_joint/base", "floor")
    match = re.fullmatch(" ".join(f"{name}={ratio}" for name in names), lines[-1])
    assert match, lines[-1]
    vea, compare, joint, floor = map(float, match.groups())
    assert floor > 1 and vea > 1 and compare > 1 and joint > 1
    assert any(line.split()[:1] == ["compare"] and len(line.split()) == 8 for line in lines)  # its breakdown row
