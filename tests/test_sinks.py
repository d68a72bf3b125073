"""Attention sinks: the massive-activation test and the exclusion by hand; a planted sink (massive activation
and massive attention, whatever the prompt) beside a planted evidence region, for every signal."""

from __future__ import annotations

import math
from contextlib import contextmanager

import pytest
import torch

from tests.graded_planting import graded
from tests.helpers import whole_prompt_layers
from vea_engine.attribution import evidence_map
from vea_engine.decoder import key_source_layers, text_decoder_layers
from vea_engine.inputs import encode_batch
from vea_engine.signals import SIGNALS, attribute
from vea_engine.sinks import (
    SINK_THRESHOLD,
    exclude_sinks,
    massive_activation,
    record_massive_activations,
    sink_flags,
)

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "What is written on the red sign?"
LAYERS = (1, 3, 4)


def test_massive_activation_by_hand():
    hidden = torch.tensor([[[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0], [1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]]])
    got = massive_activation(hidden)  # [1, 4]
    expected = torch.tensor([[4 / math.sqrt(25 / 4), 2.0, 1.0, 0.0]])  # max |h| / rms; one-hot: sqrt(D) = 2
    torch.testing.assert_close(got, expected)
    assert got.dtype == torch.float32
    assert massive_activation(hidden.double()).dtype == torch.float32


def test_sink_flags_need_a_strict_majority_of_layers():
    activity = torch.tensor(
        [[[25.0, 25.0, 1.0, 20.0]], [[25.0, 1.0, 1.0, 20.0]], [[25.0, 1.0, 30.0, 1.0]]]
    )  # [3, 1, 4]
    assert sink_flags(activity).tolist() == [[True, False, False, True]]  # 3/3, 1/3, 1/3, 2/3 (>= 20 counts)
    assert sink_flags(activity[:2]).tolist() == [[True, False, False, True]]  # 2 layers: both needed
    assert sink_flags(activity, threshold=26.0).tolist() == [[False, False, False, False]]
    for bad in (1.0, 0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="must be a finite number above 1"):
            sink_flags(activity, threshold=bad)


def test_exclude_sinks_by_hand():
    scores = torch.tensor([[1.0, 10.0, 2.0, 3.0], [4.0, 4.0, 8.0, 0.0], [5.0, 6.0, 7.0, 8.0]])
    flags = torch.tensor([[False, True, False, False], [False, False, False, False], [True, True, True, True]])
    got = exclude_sinks(scores, flags)
    assert got.tolist() == [[1.0, 2.0, 2.0, 3.0], [4.0, 4.0, 8.0, 0.0], [5.0, 6.0, 7.0, 8.0]]
    with pytest.raises(ValueError, match="do not match scores"):
        exclude_sinks(scores, flags[:, :2])


@contextmanager
def massive(vlm, layers, token, size=10.0):
    """Each sequence's image token ``token`` enters ``layers`` as ``size * e_0``: one dimension holds it all."""
    decoder_layers = text_decoder_layers(vlm.model)
    current = {}

    def set_positions(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None and input_ids.shape[1] > 1:
            current["positions"] = [int(p[token]) for p in vlm.adapter.image_token_positions(input_ids)]

    def plant(module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()  # [B, N, D]
        if hidden.shape[1] == 1:
            return None
        for b, position in enumerate(current["positions"]):
            hidden[b, position] = 0
            hidden[b, position, 0] = size
        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

    handles = [vlm.model.register_forward_pre_hook(set_positions, with_kwargs=True)]
    handles += [decoder_layers[layer].register_forward_pre_hook(plant, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _attention_rows(vlm, sink, region):
    """Every sequence: the sink 58, the region 55, other image tokens 50 (question-independent)."""

    def rows(input_ids):
        out = []
        for positions in vlm.adapter.image_token_positions(input_ids):
            logits = {int(p): 50.0 for p in positions}
            logits.update({int(positions[t]): 55.0 for t in region})
            logits[int(positions[sink])] = 58.0
            out.append(logits)
        return out

    return rows


@pytest.mark.parametrize(
    "family", ["qwen2_5_vl", "llava", "glm4v", "mistral3", "lfm2_vl", "qwen3_5", "gemma4", "llama4"]
)
def test_planted_sink_is_excluded_and_the_region_remains(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    layers = whole_prompt_layers(vlm, LAYERS)
    geometry = encode_batch(vlm, [scene_image], QUESTION).geometry
    part = geometry.parts[0]
    region = [(part.rows - 2 + dr) * part.cols + part.cols - 3 + dc for dr in (0, 1) for dc in (0, 1)]
    sink = part.cols + 1  # top-left area, far from the region
    hidden = vlm.model.config.get_text_config().hidden_size
    threshold = 0.9 * math.sqrt(hidden)  # the planted sink reaches sqrt(D); the tiny model's D is small
    with graded(vlm, layers, _attention_rows(vlm, sink, region)), massive(vlm, layers, sink):
        with record_massive_activations(vlm.model, layers) as recorded:
            plain = attribute(vlm, [scene_image], QUESTION, layers)
        cleaned = attribute(vlm, [scene_image], QUESTION, layers, sinks=True, sink_threshold=threshold)
        others = {
            signal: attribute(vlm, [scene_image], QUESTION, layers, signal=signal, sinks=True, sink_threshold=threshold)
            for signal in SIGNALS[1:]
        }
        raw = {signal: attribute(vlm, [scene_image], QUESTION, layers, signal=signal) for signal in SIGNALS[1:]}
    # the planted sink is the only token over the threshold: the region's attention alone does not flag it
    n_over = sum(int((phi >= threshold).sum()) for phi in recorded.values())
    assert n_over == len(layers)
    assert int(plain.scores[0].argmax()) == sink
    assert set(cleaned.scores[0].topk(4).indices.tolist()) == set(region)
    rest = [t for t in range(geometry.n_tokens) if t != sink]
    assert cleaned.scores[0, sink].item() == pytest.approx(plain.scores[0, rest].mean().item(), rel=1e-6)
    assert torch.equal(cleaned.scores[0, rest], plain.scores[0, rest])
    # the evidence map (no smoothing) peaks in the region with sinks excluded, on the sink without
    boxes = geometry.cell_boxes()
    for attention, tokens in ((cleaned, region), (plain, [sink])):
        peak = evidence_map(attention, apply_smooth=False, apply_denoise=False)[0]
        py, px = divmod(int(peak.argmax()), peak.shape[1])
        inside = [(boxes[t, 0] <= px < boxes[t, 2]) and (boxes[t, 1] <= py < boxes[t, 3]) for t in tokens]
        assert any(inside)
    # every signal: the sink's score is replaced by the mean of the rest (relatt: the sink is found in both prompts)
    for signal, attention in others.items():
        expected = raw[signal].scores[0, rest]
        torch.testing.assert_close(attention.scores[0, rest], expected, rtol=1e-5, atol=1e-9)
        assert attention.scores[0, sink].item() == pytest.approx(expected.mean().item(), rel=1e-4), signal


def test_no_sink_changes_nothing(vlm_of, scene_image):
    """Without massive activations (the tiny models' hidden size is far below 20^2), sinks=True is bit-identical."""
    vlm = vlm_of("llava")
    assert math.sqrt(vlm.model.config.get_text_config().hidden_size) < SINK_THRESHOLD
    for signal in SIGNALS:
        plain = attribute(vlm, [scene_image], QUESTION, LAYERS, signal=signal)
        assert torch.equal(
            attribute(vlm, [scene_image], QUESTION, LAYERS, signal=signal, sinks=True).scores, plain.scores
        )


def test_record_massive_activations_rejects_bad_layers(vlm_of):
    vlm = vlm_of("llava")
    with pytest.raises(ValueError, match=r"use indices 0\.\."):
        with record_massive_activations(vlm.model, [vlm.num_layers]):
            pass


def test_kv_shared_layers_read_the_input_of_the_layer_whose_keys_they_reuse(vlm_of, scene_image):
    """Gemma 4: a KV-shared layer runs the prompt's last position only (``logits_to_keep=1``); its keys are those
    of an earlier layer, made from that layer's input, which is where its sinks are read."""
    vlm = vlm_of("gemma4")
    sources = key_source_layers(vlm.model)
    assert sources == [0, 1, 2, 1, 1, 2]  # layers 3-5 reuse the last sliding (1) and full (2) layer of 0-2
    inputs = encode_batch(vlm, [scene_image], QUESTION).inputs
    with torch.inference_mode():
        hidden = vlm.model(**inputs, use_cache=False, output_hidden_states=True).hidden_states  # entering each layer
        with record_massive_activations(vlm.model, [1, 3, 5]) as recorded:
            vlm.model(**inputs, use_cache=False, logits_to_keep=1)
    for layer, source in ((1, 1), (3, 1), (5, 2)):
        torch.testing.assert_close(recorded[layer], massive_activation(hidden[source]), rtol=1e-5, atol=1e-5)
    attention = attribute(vlm, [scene_image], QUESTION, (2, 5), sinks=True)  # a shared layer among the selected
    assert attention.scores.shape == (1, attention.geometry.n_tokens)
