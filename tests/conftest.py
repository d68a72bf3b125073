"""Shared fixtures: tiny random-weight checkpoints of real VLM architectures, built and loaded once, and one
real ComfyUI server per installed ComfyUI version, shared by every server test; and the test tiers.

Tiers (pytest markers; every test has exactly one, ``pytest -m <tier>`` runs one, plain ``pytest`` all):

* ``fast``: everyday work, under 3 minutes on 2 cores. Every test not in another tier. A test about a
  family (in a family's own module ``test_<family>*.py``, or parametrised over families: a ``family``
  parameter, or a parameter with a ``family`` attribute such as a released checkpoint) is fast on the
  engine families (``tests.helpers.ENGINE_FAMILIES``) and ``slow`` on every other family, so the fast
  tier does not grow with the families.
* ``slow``: the per-family matrices on the other families, and tests marked ``slow``.
* ``comfy``: the real ComfyUI server (the ``server`` fixture, on every installed version), ComfyUI's
  own modules, and the real front end (also marked ``frontend``).
* ``scripts``: acceptance tests of scripts run as a user runs them (Manager install, GPU check dry run,
  bench smoke).

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

TIERS = ("fast", "slow", "comfy", "scripts")
#: Fixtures that start a real ComfyUI server: a test using one is in the ``comfy`` tier.
SERVER_FIXTURES = {"server", "comfy_servers"}


def pytest_configure(config):
    config.addinivalue_line("markers", "fast: tier: everyday tests (every test not in another tier)")
    config.addinivalue_line("markers", "slow: tier: per-family matrices beyond the engine families, long tests")
    config.addinivalue_line("markers", "comfy: tier: runs a real ComfyUI server or ComfyUI's own modules")
    config.addinivalue_line("markers", "frontend: runs the real ComfyUI front end in headless Chromium (comfy tier)")
    config.addinivalue_line("markers", "scripts: tier: acceptance tests of scripts (Manager install, GPU check, bench)")


def pytest_collection_modifyitems(items):
    """Give every test its one tier marker (see the module docstring)."""
    for item in items:
        marked = {mark.name for mark in item.iter_markers()}
        if "scripts" in marked:
            tier = "scripts"
        elif marked & {"comfy", "frontend"} or SERVER_FIXTURES & set(item.fixturenames):
            tier = "comfy"
        elif "slow" in marked:
            tier = "slow"
        else:
            tier = "slow" if set(_families(item)) - set(ENGINE_FAMILIES) else "fast"
        if (marked - {tier}) & set(TIERS):
            raise pytest.UsageError(f"{item.nodeid} is marked for more than one tier: {sorted(marked & set(TIERS))}")
        if tier not in marked:
            item.add_marker(tier)


def _families(item) -> list[str]:
    """The families a test item is about: its module's, when the module is one family's own
    (``test_<family>*.py``, the longest family name that fits), and each it is parametrised over: a
    ``family`` or ``<role>_family`` parameter, or a parameter value with a ``family`` attribute (e.g. a
    released checkpoint)."""
    from vea_engine.testing.tiny_models import FAMILIES

    stem = item.path.stem.removeprefix("test_")
    own = max((f for f in FAMILIES if stem.startswith(f)), key=len, default=None)
    found = [own] if own is not None else []
    params = item.callspec.params if hasattr(item, "callspec") else {}
    for name, value in params.items():
        family = value if name == "family" or name.endswith("_family") else getattr(value, "family", None)
        if isinstance(family, str):
            found.append(family)
    return found


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
