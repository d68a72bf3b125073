"""Shared fixtures: tiny random-weight checkpoints of real VLM architectures, built once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ENGINE_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m vea_engine ARGS`` from the repository root, output captured."""
    cmd = [sys.executable, "-m", "vea_engine", *(str(a) for a in args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def vea_run_args(model_dir, image_path, out_dir) -> list:
    """Arguments of a short ``run`` (layers 1-2, three new tokens)."""
    return ["run", "--model", model_dir, "--image", image_path, "--question", "What is written?", "--layers", "1,2",
            "--max-new-tokens", "3", "--out", out_dir]


def pytest_configure(config):
    config.addinivalue_line("markers", "frontend: runs the real ComfyUI front end in headless Chromium")
    config.addinivalue_line("markers", "comfy: runs a real ComfyUI server")


@pytest.fixture(scope="session")
def tiny_model_dirs() -> dict[str, Path]:
    """Tiny checkpoints saved like user checkpoints (rebuilt only when the builder changes)."""
    from vea_engine.testing.tiny_models import build_tiny_models

    root = Path(os.environ.get("VEA_TINY_MODELS", REPO / ".cache" / "tiny-models"))
    return build_tiny_models(root)


@pytest.fixture(scope="session")
def tiny_vlms(tiny_model_dirs):
    """family -> VLM loaded on SDPA in float32, through the user code path."""
    from vea_engine.loading import load_vlm

    return {family: load_vlm(tiny_model_dirs[family], dtype="float32") for family in ENGINE_FAMILIES}


@pytest.fixture(scope="session")
def eager_vlms(tiny_model_dirs):
    """The same checkpoints on eager attention (the oracle for captured rows)."""
    from vea_engine.loading import load_vlm

    return {
        family: load_vlm(tiny_model_dirs[family], dtype="float32", attn_implementation="eager")
        for family in ENGINE_FAMILIES
    }


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest, and identically in every process, on one thread (2 threads thrash on 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def scene_image() -> Image.Image:
    """A deterministic 200x150 RGB picture with some structure."""
    rng = np.random.default_rng(7)
    array = (rng.random((150, 200, 3)) * 60 + 90).astype(np.uint8)
    array[40:80, 120:170] = (250, 30, 30)
    return Image.fromarray(array)
