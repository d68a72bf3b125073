"""Layer choice without a model: presets, the no-preset fallback (all layers, as the reference), explicit modes."""

from __future__ import annotations

import logging

import pytest

from vea_engine.config import PRESET_LAYERS, PRESET_NUM_LAYERS
from vea_engine.layers import LayerSelection, select_layers


@pytest.mark.parametrize("num_layers", [1, 2, 6, 7, 32])
@pytest.mark.parametrize("mode", ["preset", None])
def test_no_preset_averages_all_layers_like_the_reference(mode, num_layers, caplog):
    """Issue 8 item 5: with no preset (and no profile or list) the reference averages every layer."""
    with caplog.at_level(logging.WARNING, logger="vea_engine.layers"):
        selection = select_layers(mode, num_layers, "someone/unknown-vlm")
    assert selection == LayerSelection(tuple(range(num_layers)), "fallback:all", num_layers)
    assert "no pre-profiled layers for 'someone/unknown-vlm'" in caplog.text
    assert f"averaging all {num_layers} layers" in caplog.text


def test_preset_of_another_depth_falls_back_to_all_layers(caplog):
    # the Qwen2.5-VL-7B preset (28 layers) is not used on a 6-layer model of that name
    with caplog.at_level(logging.WARNING, logger="vea_engine.layers"):
        selection = select_layers("preset", 6, "Qwen/Qwen2.5-VL-7B-Instruct")
    assert selection.layers == (0, 1, 2, 3, 4, 5) and selection.source == "fallback:all"
    assert "averaging all 6 layers" in caplog.text


def test_presets_match_by_name_and_depth(caplog):
    with caplog.at_level(logging.WARNING, logger="vea_engine.layers"):
        for key, layers in PRESET_LAYERS.items():
            selection = select_layers("preset", PRESET_NUM_LAYERS[key], f"/models/{key}")
            assert selection == LayerSelection(layers, f"preset:{key}", PRESET_NUM_LAYERS[key])
    assert caplog.text == ""  # a matching preset is not a fallback


def test_explicit_modes_unchanged(caplog):
    with caplog.at_level(logging.WARNING, logger="vea_engine.layers"):
        assert select_layers("deepest_half", 6, "x") == LayerSelection((3, 4, 5), "deepest_half", 6)
        assert select_layers("deepest_half", 7) == LayerSelection((3, 4, 5, 6), "deepest_half", 7)
        assert select_layers("all", 4) == LayerSelection((0, 1, 2, 3), "all", 4)
        assert select_layers("custom", 6, custom="1, 3-4") == LayerSelection((1, 3, 4), "custom", 6)
        assert select_layers([4, 1, 4], 6) == LayerSelection((1, 4), "custom", 6)
    assert caplog.text == ""
    with pytest.raises(ValueError, match="mode must be one of"):
        select_layers("deepest", 6)
