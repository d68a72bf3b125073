"""Captured attention rows equal eager ``output_attentions`` rows; capture changes nothing else.

The equality is checked for every family at every softmax-attention layer, on a single prompt and on a
left-padded batch of two, for text query rows and image-token query rows (bidirectional
image attention, sliding windows, prefix-LM masks, Llama 4's attention chunks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ALL_FAMILIES, ENGINE_FAMILIES
from vea_engine.attribution import extract_attention, layer_scores
from vea_engine.capture import (
    StopForward,
    attention_rows,
    capture_attention_rows,
    decoder_attention_modules,
)
from vea_engine.inputs import encode_batch

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTIONS = ["What is written on the red sign in the picture?", "Which colour?"]
TEXT_ROWS = (-1, -2, -4, -7)


def _batch(vlm, images, questions):
    return encode_batch(vlm, images, questions).inputs


def _eager_rows(eager_vlm, inputs, rows):
    with torch.inference_mode():
        out = eager_vlm.model(**inputs, use_cache=False, output_attentions=True)
    # [L, B, H, N, N] -> head mean -> selected query rows: [L, B, R, N]
    return torch.stack([a.float().mean(1)[:, list(rows)] for a in out.attentions]), out.logits


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("padded", [False, True], ids=["single", "left-padded-batch"])
def test_capture_equals_eager_every_layer(family, padded, vlm_of, scene_image):
    vlm, eager = vlm_of(family), vlm_of(family, "eager")
    images = [scene_image, scene_image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)] if padded else [scene_image]
    batch = encode_batch(vlm, images, QUESTIONS[: len(images)])
    inputs = batch.inputs
    n = inputs["input_ids"].shape[1]
    if padded:
        assert (inputs["attention_mask"][1] == 0).any(), "the second prompt must be left-padded"
    # text query rows, and image-token query rows that are image tokens in every sequence of the batch
    image_offsets = [{int(p) - n for p in positions} for positions in batch.positions]
    common = sorted(set.intersection(*image_offsets))
    rows = TEXT_ROWS + tuple(common[:: max(1, len(common) // 4)][:4])
    assert len(rows) == 8
    expected, eager_logits = _eager_rows(eager, inputs, rows)  # [L, B, R, N]: output_attentions has softmax layers
    layers = vlm.layer_kinds.attention  # every layer of a plain decoder; the softmax layers of a hybrid one
    with torch.inference_mode():
        plain = vlm.model(**inputs, use_cache=False).logits
        with capture_attention_rows(vlm.model, layers, rows) as recorder:
            captured = vlm.model(**inputs, use_cache=False).logits
    got = recorder.stacked()  # [L, B, R, N]
    assert got.shape == expected.shape == (len(layers), len(images), len(rows), n)
    assert (got - expected).abs().max().item() <= 1e-5
    # rows are real distributions and the capture does not change the forward pass
    torch.testing.assert_close(got.sum(-1), torch.ones_like(got.sum(-1)), atol=1e-5, rtol=0)
    assert torch.equal(captured, plain)
    real = inputs["attention_mask"].bool()  # padded positions' outputs are undefined in both kernels
    # the two kernels' logits agree to float rounding (a few 1e-4 after MoE routing and the tiny vocabulary's
    # largest logits; capture equals eager to 1e-5 above whatever the logits do)
    torch.testing.assert_close(plain[real], eager_logits[real], atol=3e-4, rtol=1e-4)
    if padded:  # padded keys get no attention
        assert got[:, 1, :, inputs["attention_mask"][1] == 0].abs().max().item() == 0.0
    if family == "gemma3":
        _check_gemma3_masks_were_exercised(vlm, inputs, got, rows, image_offsets[0])
    if family == "llama4":
        _check_llama4_chunks_were_exercised(vlm, inputs, got, rows, image_offsets)
    if family == "paligemma":  # the prefix (image + prompt) is bidirectional: image rows see the last prompt token
        image_rows = [i for i, r in enumerate(rows) if r in image_offsets[0]]
        assert image_rows and got[:, 0, image_rows, -1].min() > 0


def _check_gemma3_masks_were_exercised(vlm, inputs, rows_got, rows, image_offsets):
    """The comparison above covered Gemma 3's sliding window and its bidirectional image block."""
    n = inputs["input_ids"].shape[1]
    text = vlm.model.config.text_config
    sliding = [i for i, t in enumerate(text.layer_types) if t == "sliding_attention"]
    first_image = min(image_offsets) + n
    assert sliding and n - 1 - first_image >= text.sliding_window, "the window must cut the image off"
    last = rows_got[sliding[0], 0, rows.index(-1)]  # [N]
    assert last[: n - text.sliding_window].max() == 0 and last[n - text.sliding_window :].sum() > 0.99
    image_row = next(i for i, r in enumerate(rows) if r in image_offsets)
    later_image = [o + n for o in image_offsets if o > rows[image_row]]
    assert rows_got[:, 0, image_row][:, later_image].sum(-1).min() > 0  # image tokens see later image tokens


def _check_llama4_chunks_were_exercised(vlm, inputs, rows_got, rows, image_offsets):
    """The comparison above covered Llama 4's chunked layers, with the chunks cutting through the image,
    and its global NoPE layers."""
    n = inputs["input_ids"].shape[1]
    text = vlm.model.config.text_config
    chunk = text.attention_chunk_size
    chunked = [i for i, t in enumerate(text.layer_types) if t == "chunked_attention"]
    nope = [i for i, flag in enumerate(text.no_rope_layers) if not flag]
    assert chunked and nope and set(chunked).isdisjoint(nope)
    for b, offsets in enumerate(image_offsets):
        start = n - int(inputs["attention_mask"][b].sum())  # left padding: the chunks start at the first real token
        image = sorted(o + n - start for o in offsets)  # image token positions from the sequence start
        assert image[0] < chunk <= image[-1], "a chunk boundary must cut through the image tokens"
        last_chunk = start + (n - 1 - start) // chunk * chunk  # where the last prompt token's chunk starts
        assert last_chunk > start, "the chunking must cut the prompt"
        last = rows_got[:, b, rows.index(-1)]  # [L, N]
        assert last[chunked, :last_chunk].max() == 0 and last[chunked, last_chunk:].sum(-1).min() > 0.99
        assert last[nope, start].min() > 0  # the NoPE layers see the whole prompt
        cut_rows = [(i, r + n - start) for i, r in enumerate(rows) if r in offsets and r + n - start >= chunk]
        assert cut_rows, "an image query row must lie past a chunk boundary"
        for i, position in cut_rows:  # it sees no token of an earlier chunk there, the whole prompt in NoPE layers
            seen_from = start + position // chunk * chunk
            assert rows_got[chunked, b, i, :seen_from].max() == 0 and rows_got[nope, b, i, start].min() > 0


PAPER_DTYPE_CASES = [(family, "bfloat16") for family in ALL_FAMILIES] + [
    (family, dtype) for family in ENGINE_FAMILIES for dtype in ("float32", "float16")
]


@pytest.mark.parametrize(("family", "dtype"), PAPER_DTYPE_CASES)
def test_capture_on_eager_is_the_reference_head_mean_bit_for_bit(family, dtype, vlm_of, scene_image):
    """On the eager kernel the rows are the kernel's own weights averaged over heads as the reference code
    averages them, in the model's dtype, then converted: ``weights[0, :, -1, :].mean(0).float()``, bit for bit."""
    eager = vlm_of(family, "eager", dtype)
    inputs = _batch(eager, [scene_image], QUESTIONS[:1])
    layers = eager.layer_kinds.attention  # every layer of a plain decoder; the softmax layers of a hybrid one
    with torch.inference_mode():
        out = eager.model(**inputs, use_cache=False, output_attentions=True)
        with capture_attention_rows(eager.model, layers, (-1,)) as recorder:
            eager.model(**inputs, use_cache=False)
        with capture_attention_rows(eager.model, layers, (-1,), head_mean_dtype=torch.float32) as precise:
            eager.model(**inputs, use_cache=False)
    for layer, weights in zip(layers, out.attentions, strict=True):  # [B, H, N, N] in the model's dtype
        assert weights.dtype == getattr(torch, dtype)
        assert torch.equal(recorder.rows[layer][0, 0], weights[0, :, -1, :].mean(0).float())
        # the float32 opt-in averages the same weights in float32
        assert torch.equal(precise.rows[layer][0, 0], weights[0, :, -1, :].float().mean(0))
    if dtype == "bfloat16":  # the two orders differ in bfloat16: the test can tell them apart
        differs = [not torch.equal(recorder.rows[i], precise.rows[i]) for i in layers]
        assert any(differs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize(("heads", "kv_heads", "n"), [(4, 2, 37), (8, 8, 50), (14, 2, 300)])
def test_rows_computed_beside_the_kernel_use_eager_arithmetic(dtype, heads, kv_heads, n):
    """Rows computed from ``q``/``k`` (SDPA / flash) equal the rows of transformers' own eager attention on the
    same ``q``/``k``: bit for bit in half precision (logits in the model's dtype, softmax in float32, rounded back,
    heads averaged in the model's dtype), within float rounding in float32; with causal masks, GQA and softcap."""
    from types import SimpleNamespace

    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    from vea_engine.capture import head_mean

    generator = torch.Generator().manual_seed(n)
    dim = 32
    q, k, v = (torch.randn(2, h, n, dim, generator=generator).to(dtype) for h in (heads, kv_heads, kv_heads))
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, training=False, head_dim=dim)
    additive = torch.full((n, n), torch.finfo(dtype).min, dtype=dtype).triu(1)[None, None].expand(2, 1, n, n)
    positions = (-1, -5)
    for mask, softcap in ((additive, None), (None, None), (additive.eq(0), 30.0)):
        eager_mask = additive if mask is None or mask.dtype == torch.bool else mask
        _, weights = eager_attention_forward(module, q, k, v, eager_mask, scaling=dim**-0.5, softcap=softcap)
        expected = head_mean(weights, [p % n for p in positions])  # [2, R, N]: weights[b, :, p, :].mean(0)
        rows = attention_rows(q, k, mask, positions, scaling=dim**-0.5, softcap=softcap)  # [2, H, R, N]
        assert rows.dtype == dtype
        got = head_mean(rows, range(len(positions)))
        if dtype == torch.float32:
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
        else:
            assert torch.equal(got, expected)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_capture_on_eager_base_and_restores_implementation(family, vlm_of, scene_image):
    """Capture also wraps eager (float additive masks); the config is restored afterwards."""
    eager = vlm_of(family, "eager")
    images = [scene_image, scene_image]
    inputs = _batch(eager, images, QUESTIONS)
    expected, _ = _eager_rows(eager, inputs, (-1,))
    text_cfg = eager.model.config.get_text_config()
    before = text_cfg._attn_implementation
    with torch.inference_mode(), capture_attention_rows(eager.model, [0, eager.num_layers - 1]) as rec:
        eager.model(**inputs, use_cache=False)
    assert text_cfg._attn_implementation == before == "eager"
    got = rec.stacked()
    assert (got - expected[[0, eager.num_layers - 1]]).abs().max().item() <= 1e-5


def test_capture_restores_after_exception_and_early_exit(vlm_of, scene_image):
    vlm = vlm_of("qwen2_5_vl")
    cfg = vlm.model.config.get_text_config()
    before = cfg._attn_implementation
    inputs = _batch(vlm, [scene_image], QUESTIONS[:1])
    calls = []
    handle = vlm.model.model.language_model.layers[3].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with torch.inference_mode(), capture_attention_rows(vlm.model, [1, 2], stop_after_last=True) as rec:
            with pytest.raises(StopForward):
                vlm.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    assert calls == [], "layers after the deepest requested one must not run with early exit"
    assert set(rec.rows) == {1, 2}
    assert cfg._attn_implementation == before
    with pytest.raises(ZeroDivisionError), capture_attention_rows(vlm.model, [0]):
        raise ZeroDivisionError
    assert cfg._attn_implementation == before
    # the model still answers normally afterwards
    with torch.inference_mode():
        assert torch.isfinite(vlm.model(**inputs).logits).all()


def test_capture_rejects_bad_layers(vlm_of):
    vlm = vlm_of("llava")
    with pytest.raises(ValueError, match=r"valid|use indices 0\.\."):
        with capture_attention_rows(vlm.model, [vlm.num_layers]):
            pass
    with pytest.raises(ValueError, match="use indices"):
        with capture_attention_rows(vlm.model, []):
            pass


def test_attention_rows_hand_computed():
    # one head, three keys, query row = last; logits = q.k * scale
    q = torch.tensor([[[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]]])  # [1, 1, 3, 2]
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]])
    got = attention_rows(q, k, None, (-1, 0), scaling=1.0)[0, 0]
    logits = torch.tensor([0.0, 2.0, 2.0])
    torch.testing.assert_close(got[0], torch.softmax(logits, 0))
    torch.testing.assert_close(got[1], torch.tensor([1.0, 0.0, 0.0]))  # causal: the first token sees itself only
    # GQA: two query heads share one key head
    q2 = torch.cat([q, 2 * q], dim=1)
    rows = attention_rows(q2, k, None, (-1,), scaling=1.0)
    torch.testing.assert_close(rows[0, 1, 0], torch.softmax(2 * logits, 0))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["qwen2_5_vl", "mistral3", "lfm2_vl"])
def test_extract_attention_equals_eager_scores(family, attn, vlm_of, scene_image):
    """Attribution scores = mean over heads, then over the layers, of eager last-row attention at the image
    tokens (the image token id's positions: Mistral 3's row-break and end tokens, LFM2-VL's tile and
    thumbnail tags are not among them). On LFM2-VL's hybrid decoder, the attention layers (2, 5) only."""
    vlm, eager = vlm_of(family, attn), vlm_of(family, "eager")
    inputs = _batch(vlm, [scene_image], ["What is on the sign?"])
    rows, _ = _eager_rows(eager, inputs, (-1,))  # [A, 1, 1, N]: output_attentions has the attention layers
    attention_layers = vlm.layer_kinds.attention  # every layer of a plain decoder
    assert rows.shape[0] == len(attention_layers)
    positions = (inputs["input_ids"][0] == vlm.adapter.image_token_id).nonzero(as_tuple=True)[0]
    subset = tuple(attention_layers[i] for i in (1, 3, 4) if i < len(attention_layers))  # (1, 3, 4); LFM2: (5,)
    for layers in (subset, attention_layers):
        attention = extract_attention(vlm, [scene_image], "What is on the sign?", layers)
        expected = rows[[attention_layers.index(layer) for layer in layers], 0, 0].mean(0)[positions]
        assert attention.scores.shape == (1, attention.geometry.n_tokens) == (1, positions.numel())
        assert (attention.scores[0] - expected).abs().max().item() <= 1e-6
    np.testing.assert_array_equal(attention.canvas.shape[1:3], attention.geometry.canvas_hw)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_extract_attention_reads_sliding_and_kv_shared_layers(attn, vlm_of, scene_image):
    """Gemma 4: scores of every layer equal eager rows at the image tokens, KV-shared and sliding layers too.

    The attribution pass keeps the last position's logits only (``logits_to_keep=1``), so the model hands its
    KV-shared layers the last query alone, with the keys they reuse; their rows are read there all the same.
    """
    vlm, eager = vlm_of("gemma4", attn), vlm_of("gemma4", "eager")
    text = vlm.model.config.get_text_config()
    shared = [i for i, mode in enumerate(text.kv_sharing_modes) if mode == "reuse"]
    sliding = [i for i, kind in enumerate(text.layer_types) if kind == "sliding_attention"]
    assert shared and sliding and set(range(vlm.num_layers)) - set(sliding)
    question = "What is on the sign?"
    batch = encode_batch(eager, [scene_image], [question])
    ids, positions = batch.inputs["input_ids"][0], batch.positions[0]  # [N], [n]
    assert len(positions) == batch.geometry.n_tokens == int((ids == vlm.model.config.image_token_id).sum())
    config = vlm.model.config  # the image span lies between <|image> and <image|>, which are not image tokens
    assert ids[positions[0] - 1] == config.boi_token_id and ids[positions[-1] + 1] == config.eoi_token_id
    rows, _ = _eager_rows(eager, batch.inputs, (-1,))  # [L, 1, 1, N]
    expected = rows[:, 0, 0][:, positions]  # [L, n]
    cut = positions < len(ids) - text.sliding_window  # image tokens outside the last token's window
    assert cut.any() and expected[sliding][:, cut].max() == 0 and expected[-1, cut].min() > 0

    queries = []  # query count of each call of the first KV-shared layer

    def count(module, args, kwargs):
        queries.append(kwargs["hidden_states"].shape[1])  # [B, Q, D]

    hook = decoder_attention_modules(vlm.model)[shared[0]].register_forward_pre_hook(count, with_kwargs=True)
    try:
        scores, geometry, _, _ = layer_scores(vlm, [scene_image], question, range(vlm.num_layers))  # [L, 1, n]
    finally:
        hook.remove()
    assert queries == [1], "the KV-shared layers must have run on the last query alone"
    assert geometry == batch.geometry
    assert (scores[:, 0] - expected).abs().max().item() <= 1e-5
    layers = (sliding[0], shared[0], shared[-1])
    attention = extract_attention(vlm, [scene_image], question, layers)
    assert (attention.scores[0] - expected[list(layers)].mean(0)).abs().max().item() <= 1e-5
