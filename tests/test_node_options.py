"""Every node offers the engine's own choices and defaults (one source of truth), on the real server."""

from __future__ import annotations

import pytest

from tests.comfy_harness import ComfyServer
from vea_engine.config import DEFAULTS, PAPER_MAX_PIXELS, PROMPT_STYLES, RESOLUTION_MODES, ROUNDING_MODES
from vea_engine.labels import LABEL_RULES
from vea_engine.layers import LAYER_MODES
from vea_engine.loading import ATTN_IMPLEMENTATIONS, DTYPES

SHARED = {
    "lam": DEFAULTS.lam,
    "sigma": DEFAULTS.sigma,
    "alpha": DEFAULTS.alpha,
    "max_new_tokens": DEFAULTS.max_new_tokens,
}


@pytest.fixture(scope="module")
def info():
    with ComfyServer() as server:
        yield server.object_info()


def _inputs(info, node):
    return {**info[node]["input"]["required"], **info[node]["input"].get("optional", {})}


def _options(info, node, name):
    return _inputs(info, node)[name][1]["options"]


def test_choice_lists_are_the_engines(info):
    assert _options(info, "VEALoadVLM", "dtype") == list(DTYPES)
    assert _options(info, "VEALoadVLM", "attention") == list(ATTN_IMPLEMENTATIONS)
    assert _options(info, "VEALoadVLM", "resolution") == [*RESOLUTION_MODES, "pixels"]
    assert _inputs(info, "VEALoadVLM")["max_pixels"][1]["default"] == PAPER_MAX_PIXELS
    assert _options(info, "VEALayers", "mode") == [*LAYER_MODES, "profile"]
    assert _options(info, "VEAAllInOne", "layers") == list(LAYER_MODES)
    assert _options(info, "VEAAnswer", "prompt_style") == list(PROMPT_STYLES)
    assert set(_options(info, "VEAExtractAttention", "prompt_style")) <= set(PROMPT_STYLES)
    assert _options(info, "VEABlend", "rounding") == list(ROUNDING_MODES)
    assert _options(info, "VEAProfileLayers", "rule") == list(LABEL_RULES)
    assert _inputs(info, "VEAProfileLayers")["top_fraction"][1]["default"] == DEFAULTS.top_layer_fraction


def test_shared_inputs_are_declared_once(info):
    seen: dict[str, list[dict]] = {name: [] for name in SHARED}
    for node in info:
        if not node.startswith("VEA"):
            continue
        for name, (_, options) in ((n, s[:2]) for n, s in _inputs(info, node).items() if n in SHARED):
            seen[name].append(options)
    for name, declarations in seen.items():
        assert declarations, name
        assert all(d["default"] == SHARED[name] for d in declarations), name
        assert len({repr(sorted(d.items())) for d in declarations}) == 1, f"{name} is declared differently"
