"""The prepared GPU check (bench/gpu_check.sh) keeps working without a GPU: its dry run on the CPU.

The dry run builds the real Qwen2.5-VL-7B and Gemma-3-4B configs on the meta device,
counts image tokens with the real Qwen2.5-VL image processor, and prints the commands
of the pipeline and ComfyUI steps without running them. The numbers checked here are
the released checkpoints' own (decoder depth, parameter count, presets, 28x28 px per
Qwen2.5-VL token).
"""

from __future__ import annotations

import subprocess

import pytest
import torch

from tests.helpers import REPO

pytestmark = pytest.mark.scripts


def _run(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def test_gpu_check_dry_run():
    done = _run("--dry-run")
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-3000:]
    assert "[gpu_check] using " in out
    assert "Qwen2.5-VL-7B: 8.29 B parameters, 15.4 GiB in torch.bfloat16, 28 decoder layers" in out
    assert "Gemma-3-4B: 4.30 B parameters" in out and "34 decoder layers" in out
    for line in (
        "896x896 px -> grid (1, 64, 64) -> 1024 tokens",
        "1792x1792 px -> grid (1, 128, 128) -> 4096 tokens",
        "3584x1792 px -> grid (1, 128, 256) -> 8192 tokens",
        "32 crops x 256 tokens",
        "capture reads layers [18, 22, 24] (the paper's preset), stopping after layer 24",
        "capture reads layers [17, 19, 21, 23] (the paper's preset), stopping after layer 23",
        "would run N=8192: input_ids [1, 8224] through sdpa, capture, eager",
        "would save the random Qwen2.5-VL-7B, reload it with max_memory={0: 8589934592, 'cpu': 51539607552}",
    ):
        assert line in out
    if (REPO / "bench" / "bench_pipeline.py").is_file():
        assert "bench_pipeline.py --device cuda --dtype bfloat16 --config " in out
        assert "Qwen__Qwen2.5-VL-7B-Instruct" in out
    else:
        assert "skipped: bench/bench_pipeline.py is not in this checkout" in out
    assert out.count("  prompt: ") == 4
    assert "nodes ['1', '2', '3', '4', '5', '6', '7', '8', '9', '12', '14', '15']" in out
    assert out.rstrip().splitlines()[-1].startswith("total ")


def test_gpu_check_without_a_gpu_explains_and_fails():
    if torch.cuda.is_available():
        return  # a real run would start here; the dry run above covers the plumbing
    done = _run("--skip", "kernels,pipeline,comfyui", timeout=60)
    assert done.returncode == 3
    assert "no Python whose torch sees a CUDA GPU" in done.stderr
    assert "cuda False" in done.stdout  # it reports what it found first
