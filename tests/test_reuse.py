"""The attribution pass doubles as the base answer's prefill: same token ids, same maps, one pass fewer."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from tests.helpers import ALL_FAMILIES
from vea_engine.answering import answer, decode_tokens
from vea_engine.attribution import attention_and_prefill, attention_maps, extract_attention
from vea_engine.decoder import text_decoder_layers
from vea_engine.inputs import shape_buckets
from vea_engine.methods import METHODS, MethodRunner

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["What is written on the sign?", "Which colour is the car?"]


def _images(seed: int = 3, n: int = 2, size=(150, 200)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((*size, 3)) * 200 + 20).astype(np.uint8) for _ in range(n)]


@contextmanager
def recorded(vlm):
    """Record every ``generate`` call's new token ids (``[B, T]``; ``continued``: those of calls that decode on
    from a kept prefill) and count plain forward calls of the model."""
    calls = {"generate": [], "continued": [], "forward": 0}
    generate = vlm.model.generate

    def recording_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        new = sequences[:, kwargs["input_ids"].shape[1] :].clone()  # [B, T] new tokens
        calls["continued" if kwargs.get("cache") is not None else "generate"].append(new)
        return out

    def count_attribution_pass(module, args, kwargs):
        if kwargs.get("use_cache") is False:  # the stand-alone attribution pass
            calls["forward"] += 1

    vlm.model.generate = recording_generate
    handle = vlm.model.register_forward_pre_hook(count_attribution_pass, with_kwargs=True)
    try:
        yield calls
    finally:
        del vlm.model.generate
        handle.remove()


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_reused_prefill_gives_the_base_answers_token_ids_and_the_attribution_maps(vlm_of, family):
    vlm = vlm_of(family)
    images = _images()
    attention = vlm.layer_kinds.attention  # every layer of a plain decoder; the softmax layers of a hybrid one
    sets = {"selected": tuple(sorted({attention[len(attention) // 2], attention[-1]})), "all": attention}
    with recorded(vlm) as plain:
        expected_answers = answer(vlm, images, QUESTIONS, "qa", max_new_tokens=12)
    with recorded(vlm) as reused:
        maps, prefilled = attention_and_prefill(vlm, images, QUESTIONS, sets, base_answer_tokens=12)
        tokens = decode_tokens(vlm, [prefilled])[0]
    assert len(plain["generate"]) == 1 and len(reused["generate"]) == 1  # one prefill: the attribution pass
    assert torch.equal(tokens, plain["generate"][0])  # identical token ids
    assert attention_maps(vlm, images, QUESTIONS, sets, base_answer_tokens=12)[1] == expected_answers
    assert reused["forward"] == 0  # no separate attribution pass
    for name, layers in sets.items():
        alone = extract_attention(vlm, images, QUESTIONS, layers)
        assert maps[name].layers == alone.layers
        # The two questions differ in length, so the shorter is left-padded: generate() gives it positions that
        # skip the padding, the stand-alone pass counts the pads. RoPE is relative, so only rounding differs; a
        # single unpadded image is bit-equal (below).
        torch.testing.assert_close(maps[name].scores, alone.scores, rtol=1e-4, atol=1e-6)
        assert torch.equal(maps[name].canvas, alone.canvas)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_reuse_on_eager_is_bit_exact(vlm_of, family):
    """On the paper's kernel (eager) the prefill rows are the attribution rows bit for bit."""
    vlm = vlm_of(family, "eager")
    images = _images(seed=5, n=1)  # one image, as the reference code runs: no padding
    pair = vlm.layer_kinds.attention[1:3] if len(vlm.layer_kinds.attention) > 2 else vlm.layer_kinds.attention
    maps, _ = attention_maps(vlm, images, QUESTIONS[0], {"selected": pair}, base_answer_tokens=4)
    assert torch.equal(maps["selected"].scores, extract_attention(vlm, images, QUESTIONS[0], pair).scores)


def test_runner_answers_base_from_the_attribution_pass(vlm_of):
    vlm = vlm_of("llava")
    images = _images(seed=8)
    wanted = [METHODS["base"], METHODS["vea"], METHODS["vea_all_layers"]]
    with recorded(vlm) as calls:
        runner = MethodRunner(vlm, images, QUESTIONS, None, max_new_tokens=6, methods=wanted)
        got = {m.name: runner.answer(m) for m in wanted}
    # base (with every attribution captured in its prefill) + two highlighted answers: no extra pass
    assert len(calls["generate"]) == 3 and calls["forward"] == 0
    fresh = MethodRunner(vlm, images, QUESTIONS, None, max_new_tokens=6)  # no methods known: no reuse
    with recorded(vlm) as separate:
        assert {m.name: fresh.answer(m) for m in wanted} == got
    assert separate["forward"] == 2  # one attribution pass per layer set, and a separate base answer
    assert len(separate["generate"]) == 3 and not separate["continued"]


def test_without_base_the_attribution_pass_stops_early(vlm_of):
    vlm = vlm_of("qwen2_5_vl")
    runner = MethodRunner(vlm, _images(), QUESTIONS, (0,), max_new_tokens=3, methods=[METHODS["vea"]])
    seen = []
    layers = text_decoder_layers(vlm.model)
    handles = [layer.register_forward_pre_hook(lambda *_, i=i: seen.append(i)) for i, layer in enumerate(layers)]
    try:
        runner.attention("selected")
    finally:
        for handle in handles:
            handle.remove()
    assert seen == [0]  # only the first decoder layer ran


def test_delegate_masks_never_reuse_the_answering_models_prefill(vlm_of):
    vlm, mask_model = vlm_of("llava"), vlm_of("qwen2_5_vl")
    runner = MethodRunner(vlm, _images(), QUESTIONS, None, max_new_tokens=3, mask_model=mask_model,
                          methods=[METHODS["base"], METHODS["vea"]])  # fmt: skip
    with recorded(vlm) as calls:
        base = runner.answer(METHODS["base"])
    assert base == answer(vlm, _images(), QUESTIONS, "qa", max_new_tokens=3)
    assert len(calls["generate"]) == 1 and "selected" not in runner._attention


def test_shape_buckets_group_same_size_images_in_order():
    a, b = np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 3), np.uint8)
    assert shape_buckets([a, b, a, a, b]) == [[0, 2, 3], [1, 4]]
    assert shape_buckets([]) == []


def test_mixed_sizes_are_answered_in_buckets_in_input_order(vlm_of):
    vlm = vlm_of("qwen2_5_vl")
    small, large = _images(seed=1, n=2, size=(56, 84)), _images(seed=2, n=1, size=(112, 84))
    images, questions = [small[0], large[0], small[1]], ["a?", "b?", "c?"]
    with recorded(vlm) as calls:
        together = answer(vlm, images, questions, max_new_tokens=4)
    assert [ids.shape[0] for ids in calls["generate"]] == [2, 1]  # one call per size
    assert together == [answer(vlm, [im], [q], max_new_tokens=4)[0] for im, q in zip(images, questions, strict=True)]


def test_signal_methods_use_their_own_attribution(vlm_of):
    from vea_engine.signals import attribute

    vlm = vlm_of("llava")
    images = _images(seed=4, n=1)
    runner = MethodRunner(vlm, images, QUESTIONS[0], (1, 2), max_new_tokens=3,
                          methods=[METHODS["base"], METHODS["vea"], METHODS["relatt"], METHODS["grad"]])  # fmt: skip
    for signal in ("relatt", "grad"):
        expected = attribute(vlm, images, QUESTIONS[0], (1, 2), signal=signal)
        torch.testing.assert_close(runner.attention("selected", signal).scores, expected.scores, rtol=1e-5, atol=0)
        assert len(runner.answer(METHODS[signal])) == 1
    assert not torch.equal(runner.highlighted(METHODS["relatt"])[1], runner.highlighted(METHODS["vea"])[1])


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])  # multi-image, and crop-only
def test_zoom_methods_answer_with_the_window_crop(vlm_of, family):
    from vea_engine.boxes import token_map
    from vea_engine.zoom import answer_zoomed, crop_windows, evidence_on_original, zoom_windows

    vlm = vlm_of(family)
    images = _images(seed=6, n=1)
    runner = MethodRunner(vlm, images, QUESTIONS[0], (1, 2), max_new_tokens=3,
                          methods=[METHODS["base"], METHODS["zoom"], METHODS["vea_zoom"]])  # fmt: skip
    attention = extract_attention(vlm, images, QUESTIONS[0], (1, 2))
    windows = zoom_windows(evidence_on_original(token_map(attention), attention.geometry.frame), vlm.adapter.input_side)
    crops = crop_windows(images, windows)
    assert all(np.array_equal(a, b) for a, b in zip(runner.crops("selected"), crops, strict=True))
    assert runner.answer(METHODS["zoom"]) == answer_zoomed(vlm, images, crops, QUESTIONS[0], "qa", 3)
    highlighted = runner.highlighted(METHODS["vea_zoom"])[1]
    prompt = "vea" if vlm.adapter.multi_image else "qa"  # a crop alone is not highlighted
    assert runner.answer(METHODS["vea_zoom"]) == answer_zoomed(vlm, highlighted, crops, QUESTIONS[0], prompt, 3)


def test_run_vea_with_another_signal_and_sinks_uses_that_attribution(vlm_of):
    from vea_engine.pipeline import run_vea
    from vea_engine.signals import attribute

    vlm = vlm_of("qwen2_5_vl")
    images = _images(seed=9, n=1)
    result = run_vea(vlm, images, QUESTIONS[0], (1, 2), max_new_tokens=2, signal="relatt", sinks=True)
    expected = attribute(vlm, images, QUESTIONS[0], (1, 2), signal="relatt", sinks=True)
    torch.testing.assert_close(result.attention.scores, expected.scores, rtol=1e-5, atol=0)
    assert set(result.answers) == {"base", "vea"}
    with pytest.raises(ValueError, match="signal must be one of"):
        run_vea(vlm, images, QUESTIONS[0], (1, 2), signal="saliency")
