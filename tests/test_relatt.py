"""Relative attention: both prompts in one padded pass equal two separate passes; the ratio finds
what the question adds; the epsilon guard, by hand."""

from __future__ import annotations

import pytest
import torch

from tests.graded_planting import graded
from tests.helpers import whole_prompt_layers
from vea_engine.attribution import extract_attention
from vea_engine.inputs import encode_batch
from vea_engine.relatt import (
    ABSOLUTE_FLOOR,
    GENERIC_QUESTION,
    paired_attention,
    relative_attention,
    relative_scores,
)

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "What is written on the red sign?"
LAYERS = (1, 3, 4)


@pytest.mark.parametrize(
    "family", ["qwen2_5_vl", "llava", "glm4v", "mistral3", "lfm2_vl", "qwen3_5", "gemma4", "llama4"]
)
def test_one_padded_pass_equals_two_separate_passes(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    layers = whole_prompt_layers(vlm, LAYERS)
    lengths = {
        q: int(encode_batch(vlm, [scene_image], q).inputs["attention_mask"].sum()) for q in (QUESTION, GENERIC_QUESTION)
    }
    assert lengths[QUESTION] != lengths[GENERIC_QUESTION], "the prompts must differ in length (padding exercised)"
    question_map, generic_map = paired_attention(vlm, [scene_image], QUESTION, layers)
    alone_q = extract_attention(vlm, [scene_image], QUESTION, layers)
    alone_g = extract_attention(vlm, [scene_image], GENERIC_QUESTION, layers)
    assert (question_map.scores - alone_q.scores).abs().max().item() <= 1e-6
    assert (generic_map.scores - alone_g.scores).abs().max().item() <= 1e-6
    assert question_map.geometry == alone_q.geometry and torch.equal(question_map.canvas, alone_q.canvas)
    assert question_map.questions == (QUESTION,) and generic_map.questions == (GENERIC_QUESTION,)
    ratio = relative_attention(vlm, [scene_image], QUESTION, layers)
    torch.testing.assert_close(ratio.scores, alone_q.scores / alone_g.scores, rtol=1e-4, atol=0)
    assert ratio.layers == layers and ratio.questions == (QUESTION,)


def test_batch_of_two_images_keeps_each_image_with_its_question(vlm_of, scene_image):
    vlm = vlm_of("qwen2_5_vl")
    flipped = scene_image.transpose(0)  # FLIP_LEFT_RIGHT
    questions = [QUESTION, "Which colour?"]
    question_map, generic_map = paired_attention(vlm, [scene_image, flipped], questions, LAYERS)
    for i, (image, question) in enumerate(zip([scene_image, flipped], questions, strict=True)):
        alone = extract_attention(vlm, [image], question, LAYERS)
        generic = extract_attention(vlm, [image], GENERIC_QUESTION, LAYERS)
        assert (question_map.scores[i] - alone.scores[0]).abs().max().item() <= 1e-6
        assert (generic_map.scores[i] - generic.scores[0]).abs().max().item() <= 1e-6


def _planted_rows(vlm, image, region, distractor):
    """Question rows: distractor 56, region 53, other image tokens 50; generic rows: distractor 56, the rest 50."""
    generic_len = int(encode_batch(vlm, [image], GENERIC_QUESTION).inputs["input_ids"].shape[1])
    pad = vlm.processor.tokenizer.pad_token_id

    def rows(input_ids):
        out = []
        for ids, positions in zip(input_ids, vlm.adapter.image_token_positions(input_ids), strict=True):
            is_generic = int((ids != pad).sum()) == generic_len
            logits = {int(p): 50.0 for p in positions}
            for t in distractor:
                logits[int(positions[t])] = 56.0
            if not is_generic:
                for t in region:
                    logits[int(positions[t])] = 53.0
            out.append(logits)
        return out

    return rows


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava", "glm4v"])
def test_planted_question_region_wins_over_a_question_independent_peak(family, vlm_of, scene_image):
    """Both prompts attend most to a distractor; only the question adds a region. Plain attention peaks on the
    distractor, relative attention on the region (by the planted factor e^3 over every other token)."""
    vlm = vlm_of(family)
    n = encode_batch(vlm, [scene_image], QUESTION).geometry.n_tokens
    region, distractor = [n // 2, n // 2 + 1], [1]
    with graded(vlm, LAYERS, _planted_rows(vlm, scene_image, region, distractor)):
        plain = extract_attention(vlm, [scene_image], QUESTION, LAYERS).scores[0]
        ratio = relative_attention(vlm, [scene_image], QUESTION, LAYERS).scores[0]
        question_map, generic_map = paired_attention(vlm, [scene_image], QUESTION, LAYERS)
    assert int(plain.argmax()) in distractor
    assert set(ratio.topk(len(region)).indices.tolist()) == set(region)
    others = [t for t in range(n) if t not in region]
    assert ratio[region].min() / ratio[others].max() == pytest.approx(torch.e**3, rel=0.02)
    torch.testing.assert_close(question_map.scores[0], plain, atol=1e-6, rtol=0)  # planted batched == separate too


def test_relative_scores_by_hand():
    q = torch.tensor([[0.2, 0.3, 0.5, 0.0], [0.1, 0.1, 0.4, 0.4]])
    g = torch.tensor([[0.4, 0.1, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]])
    got = relative_scores(q, g)
    # row 0: mean(g) = 0.25, floor = 2.5e-7: the 0 / 0 token gives 0
    torch.testing.assert_close(got, torch.tensor([[0.5, 3.0, 1.0, 0.0], [0.4, 0.4, 1.6, 1.6]]))
    assert got.dtype == torch.float32
    # a generic score of 0 or a denormal is floored at epsilon * mean: finite, no denormal division
    tiny = torch.tensor([[1.0, 1e-40, 0.0]])
    floored = relative_scores(torch.tensor([[1.0, 0.5, 0.5]]), tiny, epsilon=1e-6)
    floor = 1e-6 * (1.0 + 1e-40) / 3
    torch.testing.assert_close(floored, torch.tensor([[1.0, 0.5 / floor, 0.5 / floor]]))
    # all-zero generic scores: the absolute floor keeps the ratio finite
    zero = relative_scores(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))
    assert torch.isfinite(zero).all() and zero[0, 0] == pytest.approx(1 / ABSOLUTE_FLOOR, rel=1e-6)


def test_relative_scores_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"epsilon = 0 must be in \(0, 1\)"):
        relative_scores(torch.ones(1, 2), torch.ones(1, 2), epsilon=0)
    with pytest.raises(ValueError, match=r"must both be \[B, n\]"):
        relative_scores(torch.ones(1, 2), torch.ones(1, 3))
