"""Shared fixtures: tiny random-weight checkpoints of real VLM architectures, built and loaded once, and one
real ComfyUI server per installed ComfyUI version, shared by every server test.

Plain helpers and constants live in ``tests/helpers.py``; import them from there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.comfy_harness import comfy_versions_param, shared_server, version_id
from tests.helpers import ENGINE_FAMILIES, REPO


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
def vlm_of(tiny_model_dirs) -> Callable[..., object]:
    """``vlm_of(family, attn="sdpa", dtype="float32")``: any family's tiny checkpoint, loaded once per session.

    Loaded through the user code path (``load_vlm``); ``attn="eager"`` gives the oracle for
    captured rows; ``dtype`` may be ``bfloat16`` or ``float16`` (the paper's dtype is bfloat16).
    Tests share these objects: hooks and patches must be removed in ``finally``.
    """
    from vea_engine.loading import load_vlm

    cache: dict[tuple[str, str, str], object] = {}

    def get(family: str, attn: str = "sdpa", dtype: str = "float32"):
        if (family, attn, dtype) not in cache:
            cache[family, attn, dtype] = load_vlm(tiny_model_dirs[family], dtype=dtype, attn_implementation=attn)
        return cache[family, attn, dtype]

    return get


class _LoadedOnUse(Mapping):
    """``family -> VLM`` over :data:`ENGINE_FAMILIES`, each loaded (through ``vlm_of``) when first used."""

    def __init__(self, vlm_of, attn: str):
        self._vlm_of, self._attn = vlm_of, attn

    def __getitem__(self, family: str):
        if family not in ENGINE_FAMILIES:
            raise KeyError(family)
        return self._vlm_of(family, self._attn)

    def __iter__(self) -> Iterator[str]:
        return iter(ENGINE_FAMILIES)

    def __len__(self) -> int:
        return len(ENGINE_FAMILIES)


@pytest.fixture(scope="session")
def tiny_vlms(vlm_of) -> Mapping:
    """family -> VLM on SDPA in float32 (the same objects as ``vlm_of(family)``)."""
    return _LoadedOnUse(vlm_of, "sdpa")


@pytest.fixture(scope="session")
def eager_vlms(vlm_of) -> Mapping:
    """The same checkpoints on eager attention (the oracle for captured rows)."""
    return _LoadedOnUse(vlm_of, "eager")


@pytest.fixture(scope="session")
def comfy_servers(tiny_model_dirs, tmp_path_factory) -> Iterator[Callable[[str], object]]:
    """``comfy_servers(version)``: the session's shared ComfyUI server of ``version``, started on first use.

    Laid out by :func:`tests.comfy_harness.shared_server` (every tiny checkpoint linked); stopped at the
    end of the session. A server that failed to start is not tried again: each later use re-raises.
    """
    started: dict[str, object] = {}

    def get(version: str):
        if version not in started:
            try:
                started[version] = shared_server(version, tiny_model_dirs, tmp_path_factory.mktemp("comfy")).start()
            except Exception as error:  # noqa: BLE001 - remembered, raised again for every test
                started[version] = error
        if isinstance(started[version], Exception):
            raise started[version]
        return started[version]

    yield get
    for srv in started.values():
        if not isinstance(srv, Exception):
            srv.stop()


@pytest.fixture(scope="session", params=comfy_versions_param(), ids=version_id)
def server(request, comfy_servers):
    """The shared ComfyUI server (``ComfyServer``) of each installed version: a test using it runs once per version.

    Tests share it: use its model names as they are, and put any file a test adds (inputs, outputs) under
    a name of its own. Queue with the harness (a fresh client id per call) and wait for your own prompt id.
    """
    return comfy_servers(request.param)


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
