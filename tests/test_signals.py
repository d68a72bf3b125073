"""The one attribution entry point: each signal is its engine function's result, exactly; every map feeds the
mask stages unchanged; bad choices are refused before any forward pass."""

from __future__ import annotations

import pytest
import torch

from vea_engine.attribution import evidence_map, extract_attention
from vea_engine.gradient import gradient_x_input
from vea_engine.relatt import relative_attention
from vea_engine.signals import SIGNALS, attribute, check_signal, signal_options

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "What is written on the red sign?"
LAYERS = (1, 3, 4)


def test_signal_choices():
    assert SIGNALS == ("attention", "relatt", "grad")
    assert {"prompt_style", "template", "progress", "rounding"} <= set.intersection(
        *map(set, map(signal_options, SIGNALS))
    )
    assert {"epsilon", "generic"} <= set(signal_options("relatt")) - set(signal_options("attention"))
    assert {"sign", "target_ids", "checkpoint"} <= set(signal_options("grad")) - set(signal_options("relatt"))
    assert check_signal("grad") == "grad"
    with pytest.raises(ValueError, match=r"signal must be one of \('attention', 'relatt', 'grad'\), got 'saliency'"):
        check_signal("saliency")


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava", "glm4v"])
def test_attention_is_extract_attention_bit_for_bit(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    for style in ("qa", "vea"):
        expected = extract_attention(vlm, [scene_image], QUESTION, LAYERS, prompt_style=style)
        got = attribute(vlm, [scene_image], QUESTION, LAYERS, prompt_style=style)
        assert torch.equal(got.scores, expected.scores) and torch.equal(got.canvas, expected.canvas)
        assert (got.geometry, got.layers, got.questions) == (expected.geometry, expected.layers, expected.questions)


def test_relatt_and_grad_are_their_functions(vlm_of, scene_image):
    vlm = vlm_of("qwen2_5_vl")
    relatt = attribute(vlm, [scene_image], QUESTION, LAYERS, signal="relatt", epsilon=1e-3)
    assert torch.equal(relatt.scores, relative_attention(vlm, [scene_image], QUESTION, LAYERS, epsilon=1e-3).scores)
    grad = attribute(vlm, [scene_image], QUESTION, LAYERS, signal="grad", sign="absolute", target_ids=7)
    expected = gradient_x_input(vlm, [scene_image], QUESTION, LAYERS, sign="absolute", target_ids=7)
    assert torch.equal(grad.scores, expected.attention.scores)
    assert torch.equal(grad.scores, expected.gradients.raw.abs())
    # every map goes through the paper's mask stages as it is
    for attention in (relatt, grad):
        evidence = evidence_map(attention)
        assert evidence.shape == (1, *attention.geometry.canvas_hw)
        assert evidence.min() == 0 and evidence.max() == 1


def test_bad_choices_fail_before_the_forward_pass(vlm_of, scene_image):
    vlm = vlm_of("llava")
    calls = []
    handle = vlm.model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(ValueError, match="signal must be one of"):
            attribute(vlm, [scene_image], QUESTION, LAYERS, signal="Attention")
        with pytest.raises(ValueError, match=r"option\(s\) \['early_exit'\] do not apply to signal 'grad'"):
            attribute(vlm, [scene_image], QUESTION, LAYERS, signal="grad", early_exit=True)
        with pytest.raises(ValueError, match=r"option\(s\) \['epsilon'\] do not apply to signal 'attention'"):
            attribute(vlm, [scene_image], QUESTION, LAYERS, epsilon=1e-3)
        with pytest.raises(ValueError, match="sinks must be True or False, got 'yes'"):
            attribute(vlm, [scene_image], QUESTION, LAYERS, sinks="yes")
        with pytest.raises(ValueError, match="attribute: sink threshold = 0.5 must be a finite number above 1"):
            attribute(vlm, [scene_image], QUESTION, LAYERS, sinks=True, sink_threshold=0.5)
        with pytest.raises(ValueError, match=r"layer\(s\) \[9\] out of range"):
            attribute(vlm, [scene_image], QUESTION, [9], signal="grad")
    finally:
        handle.remove()
    assert calls == []
