"""Every node offers the engine's own choices and defaults (one source of truth), on the real server."""

from __future__ import annotations

import pytest

from tests.comfy_harness import input_options, node_inputs
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
def info(server):
    return server.object_info()


def _inputs(info, node):
    return node_inputs(info[node])  # the inputs inside a DynamicCombo's options too


def _options(info, node, name):
    return input_options(_inputs(info, node)[name])


def _is(choices: list, expected) -> bool:
    """The engine's choices in the engine's order; a DynamicCombo (0.33.0) may list its default first."""
    expected = list(expected)
    if choices == expected:
        return True
    return sorted(choices) == sorted(expected) and [c for c in expected if c != choices[0]] == choices[1:]


def test_choice_lists_are_the_engines(info):
    assert _is(_options(info, "VEALoadVLM", "dtype"), DTYPES)
    assert _is(_options(info, "VEALoadVLM", "attention"), ATTN_IMPLEMENTATIONS)
    assert _is(_options(info, "VEALoadVLM", "resolution"), [*RESOLUTION_MODES, "pixels"])
    assert _inputs(info, "VEALoadVLM")["max_pixels"][1]["default"] == PAPER_MAX_PIXELS
    assert _is(_options(info, "VEALayers", "mode"), [*LAYER_MODES, "profile"])
    assert _is(_options(info, "VEAAllInOne", "layers"), LAYER_MODES)
    assert _is(_options(info, "VEAAnswer", "prompt_style"), PROMPT_STYLES)
    assert set(_options(info, "VEAExtractAttention", "prompt_style")) <= set(PROMPT_STYLES)
    assert _is(_options(info, "VEABlend", "rounding"), ROUNDING_MODES)
    assert _is(_options(info, "VEAProfileLayers", "rule"), LABEL_RULES)
    assert _inputs(info, "VEAProfileLayers")["top_fraction"][1]["default"] == DEFAULTS.top_layer_fraction
    assert not _is(["a", "c", "b"], ["a", "b", "c"]) and _is(["c", "a", "b"], ["a", "b", "c"])


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
