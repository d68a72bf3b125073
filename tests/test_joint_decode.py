"""Answers prefilled on their own and decoded as one batch give the token ids of plain ``generate``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import ALL_FAMILIES, continuations, plain_tokens
from vea_engine import compat
from vea_engine.answering import answer, answer_inputs, decode_answers, decode_tokens, prefill_answers
from vea_engine.methods import METHODS, MethodRunner

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["What is written on the sign?", "Which colour is the car?"]


def _image(seed: int, size=(150, 200)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((*size, 3)) * 200 + 20).astype(np.uint8)


def _inputs(vlm, images, questions, style, tokens):
    (bucket, inputs), *rest = answer_inputs(vlm, images, questions, style, max_new_tokens=tokens)
    assert not rest and bucket == list(range(len(images)))
    return inputs


def going_on(vlm, *tokens: torch.Tensor) -> int:
    """How many rows of these ``[B, T]`` answers did not end with their first token."""
    eos = vlm.model.generation_config.eos_token_id
    ends = {eos} if isinstance(eos, int) else set(eos or [])
    return sum(int(first) not in ends for t in tokens for first in t[:, 0])


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_joint_decoding_gives_each_batch_its_plain_token_ids(vlm_of, family):
    """Two prefills of different prompts, image sizes (M-RoPE offsets), padding and limits, decoded as one batch."""
    vlm = vlm_of(family)
    first = _inputs(vlm, [_image(1), _image(2)], QUESTIONS, "qa", 12)  # two rows, left-padded
    second = _inputs(vlm, [_image(3, (120, 90))], QUESTIONS[0], "vea", 9)  # another size, a longer prompt
    expected = [plain_tokens(vlm, first, 12), plain_tokens(vlm, second, 9)]
    with continuations(vlm) as sizes:
        got = decode_tokens(vlm, [prefill_answers(vlm, first, 12), prefill_answers(vlm, second, 9)])
    assert sizes == [going_on(vlm, *expected)]  # every row that had not ended, in one batch
    for tokens, oracle in zip(got, expected, strict=True):
        assert torch.equal(tokens, oracle)


def test_ended_rows_are_not_decoded_and_answers_are_cut_as_generate_cuts_them(vlm_of):
    vlm = vlm_of("llava")
    inputs = _inputs(vlm, [_image(4), _image(5)], QUESTIONS, "qa", 8)
    other = _inputs(vlm, [_image(6)], QUESTIONS[1], "vea", 8)
    free = plain_tokens(vlm, inputs, 8)
    config = vlm.model.generation_config
    saved = config.eos_token_id
    # row 0 ends with its first token, row 1 with its third: both are made end tokens
    config.eos_token_id = [*([saved] if isinstance(saved, int) else saved or []), int(free[0, 0]), int(free[1, 2])]
    try:
        ends = set(config.eos_token_id)
        expected, expected_other = plain_tokens(vlm, inputs, 8), plain_tokens(vlm, other, 8)
        with continuations(vlm) as sizes:
            got = decode_tokens(vlm, [prefill_answers(vlm, inputs, 8), prefill_answers(vlm, other, 8)])
    finally:
        config.eos_token_id = saved
    assert int(expected[0, 0]) in ends and int(expected[1, 0]) not in ends  # the oracle: row 0 ended at once
    going_on = [int(t) not in ends for t in (expected[0, 0], expected[1, 0], expected_other[0, 0])]
    assert sizes == [sum(going_on)] and sum(going_on) < 3  # rows that ended with their first token are not decoded on
    assert torch.equal(got[0], expected) and torch.equal(got[1], expected_other)


def test_a_minimum_length_of_the_generation_config_holds_across_prefill_and_decoding(vlm_of):
    vlm = vlm_of("qwen2_5_vl")
    inputs = _inputs(vlm, [_image(7)], QUESTIONS[0], "qa", 6)
    config = vlm.model.generation_config
    free = plain_tokens(vlm, inputs, 6)
    saved_eos, saved_min = config.eos_token_id, config.min_new_tokens
    config.eos_token_id, config.min_new_tokens = int(free[0, 0]), 6  # the first token may not end the answer yet
    try:
        expected = plain_tokens(vlm, inputs, 6)
        got = decode_tokens(vlm, [prefill_answers(vlm, inputs, 6)])[0]
    finally:
        config.eos_token_id, config.min_new_tokens = saved_eos, saved_min
    assert expected.shape == (1, 6) and int(expected[0, 0]) != int(free[0, 0])
    assert torch.equal(got, expected)


def test_caches_that_cannot_be_joined_decode_one_prefill_at_a_time(vlm_of, monkeypatch):
    vlm = vlm_of("gemma3")  # sliding-window layers
    a = _inputs(vlm, [_image(8)], QUESTIONS[0], "qa", 5)
    b = _inputs(vlm, [_image(9)], QUESTIONS[1], "vea", 5)
    expected = [plain_tokens(vlm, a, 5), plain_tokens(vlm, b, 5)]
    monkeypatch.setattr(compat, "merge_caches", lambda caches, rows: None)
    with continuations(vlm) as sizes:
        got = decode_tokens(vlm, [prefill_answers(vlm, a, 5), prefill_answers(vlm, b, 5)])
    assert sizes == [1, 1]
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


def test_merge_caches_right_aligns_rows_and_keeps_the_longest_sliding_length():
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    def cache(batch: int, length: int, window_length: int) -> DynamicCache:
        made = DynamicCache()
        full, sliding = DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=4)
        full.update(torch.arange(batch * length, dtype=torch.float32).reshape(batch, 1, length, 1) + 1,
                    torch.ones(batch, 1, length, 1))  # fmt: skip
        sliding.update(torch.ones(batch, 1, window_length, 1), torch.ones(batch, 1, window_length, 1))
        made.layers = [full, sliding]
        return made

    a, b = cache(2, 3, 6), cache(1, 5, 2)
    merged = compat.merge_caches([a, b], [torch.tensor([1]), torch.tensor([0])])
    keys = merged.layers[0].keys[:, 0, :, 0]  # [2, 5]
    assert keys.tolist() == [[0, 0, 4, 5, 6], [1, 2, 3, 4, 5]]  # row 1 of a, padded on the left; b as it was
    assert merged.layers[1].keys.shape == (2, 1, 3, 1) and merged.layers[1].cumulative_length == 6
    assert merged.layers[1].keys[1, 0, :, 0].tolist() == [0, 1, 1]
    assert compat.merge_caches([a, object()], [torch.tensor([0]), torch.tensor([0])]) is None


def test_merge_caches_joins_conv_and_recurrent_states_row_wise():
    """Linear-attention cache layers: LFM2's convolution layers (conv states only) and Gated DeltaNet layers (conv
    and recurrent states), joined row-wise beside a key/value layer, with the longest prompt's length."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, LinearAttentionLayer

    def states(batch: int, length: int, offset: float) -> torch.Tensor:
        return torch.arange(batch * 2 * length, dtype=torch.float32).reshape(batch, 2, length) + offset  # [B, C, n]

    def cache(batch: int, length: int, offset: float, recurrent: bool = True) -> DynamicCache:
        made = DynamicCache()
        full, conv, delta = DynamicLayer(), LinearAttentionLayer(), LinearAttentionLayer()
        full.update(torch.ones(batch, 1, length, 1), torch.ones(batch, 1, length, 1))
        conv.update_conv_state(states(batch, length, offset), conv_kernel_size=3)  # keeps the last 3 columns
        delta.update_conv_state(states(batch, length, offset + 100), conv_kernel_size=3)
        if recurrent:
            delta.update_recurrent_state(torch.arange(batch, dtype=torch.float32).reshape(batch, 1, 1) + offset)
        made.layers = [full, conv, delta]
        return made

    a, b = cache(2, 4, 0.0), cache(1, 6, 1000.0)
    expected_conv = torch.cat([states(2, 4, 0.0)[1:, :, -3:], states(1, 6, 1000.0)[:, :, -3:]])  # [2, 2, 3]
    merged = compat.merge_caches([a, b], [torch.tensor([1]), torch.tensor([0])])
    conv, delta = merged.layers[1], merged.layers[2]
    assert torch.equal(conv.conv_states[0], expected_conv) and conv.recurrent_states[0] is None
    assert torch.equal(delta.conv_states[0], expected_conv + 100)
    assert delta.recurrent_states[0].flatten().tolist() == [1.0, 1000.0]
    assert int(conv.cumulative_length_linear) == int(delta.cumulative_length_linear) == 6
    assert merged.layers[0].keys.shape == (2, 1, 6, 1)
    # a Gated DeltaNet layer without its recurrent state, or a layer that has seen no prefill, is not joined
    assert compat.merge_caches([cache(1, 4, 0.0), cache(1, 4, 0.0, recurrent=False)], [torch.tensor([0])] * 2) is None
    empty = cache(1, 4, 0.0)
    empty.layers[1] = LinearAttentionLayer()
    assert compat.merge_caches([cache(1, 4, 0.0), empty], [torch.tensor([0])] * 2) is None


@pytest.mark.parametrize("family", ["qwen2_5_vl", "gemma3"])
def test_compare_decodes_base_and_vea_as_one_batch_with_their_plain_answers(vlm_of, family):
    vlm = vlm_of(family)
    images = [_image(10), _image(11)]
    wanted = [METHODS["base"], METHODS["inst"], METHODS["vea"]]
    runner = MethodRunner(vlm, images, QUESTIONS, None, max_new_tokens=7, methods=wanted, joint_decode=True)
    with continuations(vlm) as sizes:
        got = runner.answers(wanted)
    assert list(got) == ["base", "inst", "vea"]
    assert len(sizes) == 2 and sizes[0] > 2  # base + inst (two images each) together, then vea
    assert got["base"] == answer(vlm, images, QUESTIONS, "qa", max_new_tokens=7)
    assert got["inst"] == answer(vlm, images, QUESTIONS, "vea", max_new_tokens=7)
    assert got["vea"] == answer(vlm, runner.highlighted(METHODS["vea"])[1], QUESTIONS, "vea", max_new_tokens=7)


def test_progress_counts_every_answer_token(vlm_of):
    vlm = vlm_of("llava")
    seen: list[tuple[int, int]] = []
    inputs = _inputs(vlm, [_image(12)], QUESTIONS[0], "qa", 4)

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    decode_answers(vlm, [prefill_answers(vlm, inputs, 4, progress)], progress)
    assert seen[0] == (1, 4) and seen[-1][1] == 4 and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_answers_are_decoded_alone_by_default_and_together_on_request(vlm_of):
    from vea_engine.pipeline import run_vea

    vlm = vlm_of("qwen2_5_vl")
    images = [_image(13)]
    with continuations(vlm) as sizes:
        separate = run_vea(vlm, images, QUESTIONS[0], None, max_new_tokens=5)
    assert set(sizes) <= {1}  # at most the base answer, alone, on from the attribution pass
    with continuations(vlm) as sizes:
        joint = run_vea(vlm, images, QUESTIONS[0], None, max_new_tokens=5, joint_decode=True)
    assert sizes == [2]  # base and VEA answers as one batch
    assert separate.answers == joint.answers
    assert separate.answers["base"] == answer(vlm, images, QUESTIONS[0], "qa", max_new_tokens=5)
    assert separate.answers["vea"] == answer(vlm, separate.highlighted, QUESTIONS[0], "vea", max_new_tokens=5)


def test_mixed_image_sizes_are_answered_method_by_method(vlm_of):
    vlm = vlm_of("llava")
    images = [_image(14), _image(15, (120, 90))]
    runner = MethodRunner(vlm, images, QUESTIONS, None, max_new_tokens=4, methods=[METHODS["inst"]])
    with continuations(vlm) as sizes:
        got = runner.answers([METHODS["inst"]])
    assert sizes == []  # no prefill kept: answered whole, one generate call per image size
    assert got == {"inst": answer(vlm, images, QUESTIONS, "vea", max_new_tokens=4)}
