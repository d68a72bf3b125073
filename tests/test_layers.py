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


# -- hybrid decoders: layer kinds from the config ----------------------------------------------------

#: Qwen3.5-9B's ``layer_types``: linear attention with every fourth layer softmax (32 layers, 8 softmax).
QWEN3_5_9B_KINDS = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(32)]


def _kinds(layer_types, **fields):
    from types import SimpleNamespace

    from vea_engine.decoder import kinds_from_config

    return kinds_from_config(SimpleNamespace(num_hidden_layers=len(layer_types), layer_types=layer_types, **fields))


def test_layer_kinds_read_the_config_once():
    from vea_engine.decoder import LayerKind, LayerKinds, kinds_from_config

    qwen = _kinds(QWEN3_5_9B_KINDS)
    assert qwen.attention == (3, 7, 11, 15, 19, 23, 27, 31) and qwen.num_layers == 32 and qwen.hybrid
    assert qwen.layers[0] == LayerKind("linear_attention", None, 0) and not qwen.layers[0].softmax
    # Gemma 3: sliding layers are softmax attention with a window; legacy spellings are read as today's
    gemma = _kinds(["sliding_attention"] * 5 + ["full_attention"], sliding_window=1024)
    assert gemma.attention == tuple(range(6)) and not gemma.hybrid
    assert [k.window for k in gemma.layers] == [1024] * 5 + [None]
    assert _kinds(["attention", "mamba", "attention"]).attention == (0, 2)
    assert _kinds(["chunked_attention", "full_attention"], attention_chunk_size=8192).layers[0].window == 8192
    # LFM2: convolution layers are not attention
    assert _kinds(["conv", "conv", "full_attention", "conv"]).attention == (2,)
    # KV sharing (Gemma 3n / 4): the last layers attend with the keys of the last unshared layer of their kind
    shared = _kinds(["sliding_attention", "full_attention"] * 3, num_kv_shared_layers=2)
    assert [k.kv_layer for k in shared.layers] == [0, 1, 2, 3, 2, 3]
    # no layer_types: every layer is full attention, as a plain depth means
    plain = kinds_from_config(__import__("types").SimpleNamespace(num_hidden_layers=4))
    assert plain == LayerKinds.uniform(4) and plain.attention == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="no softmax-attention layer"):
        _kinds(["linear_attention"] * 3)
    with pytest.raises(ValueError, match="declares 3 layer_types for 4 decoder layers"):
        kinds_from_config(__import__("types").SimpleNamespace(num_hidden_layers=4, layer_types=["full_attention"] * 3))


def test_hybrid_layer_modes_mean_the_softmax_layers(caplog):
    kinds = _kinds(QWEN3_5_9B_KINDS)
    attention = (3, 7, 11, 15, 19, 23, 27, 31)
    with caplog.at_level(logging.WARNING, logger="vea_engine.layers"):
        for mode in ("preset", None):
            assert select_layers(mode, kinds, "Qwen/Qwen3.5-9B") == LayerSelection(attention, "fallback:all", 32)
    assert "averaging all 8 softmax-attention layers" in caplog.text
    assert select_layers("all", kinds).layers == attention
    assert select_layers("deepest_half", kinds).layers == (19, 23, 27, 31)
    assert select_layers("custom", kinds, custom="7, 31").layers == (7, 31)
    message = (
        r"layer\(s\) \[5, 6\] are linear_attention layers.*softmax-attention layers \[3, 7, 11, 15, 19, 23, 27, 31\]"
    )
    for layers in ([5, 6, 7], "5-7"):
        with pytest.raises(ValueError, match=message):
            select_layers("custom", kinds, custom=layers)
    with pytest.raises(ValueError, match=message):
        LayerSelection((5, 6, 7), "profile:x.json", 32).check(kinds)
    with pytest.raises(ValueError, match=r"out of range for a model with 32 decoder layers"):
        select_layers([40], kinds)
    # a plain depth still means every layer is softmax attention (every existing family)
    assert select_layers("deepest_half", 6).layers == (3, 4, 5) and select_layers("all", 6).layers == tuple(range(6))
