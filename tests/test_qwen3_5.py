"""Qwen3.5 / Qwen3.5-MoE: a hybrid decoder, read at its softmax-attention layers only.

The tiny checkpoints have 6 decoder layers, softmax attention at 2 and 5 and Gated DeltaNet
linear attention elsewhere. What every family must show (capture, planting, boxes, zoom,
reuse, joint decoding...) runs through the ``ALL_FAMILIES`` tests; here, what is particular
to a hybrid decoder: the oracle on the inputs ``encode_batch`` gives, the default layers, the
refusal of linear layers and profiling over softmax layers.
"""

from __future__ import annotations

import math
import types

import pytest
import torch

from vea_engine.attribution import extract_attention
from vea_engine.capture import capture_attention_rows, decoder_attention_modules
from vea_engine.inputs import encode_batch
from vea_engine.layers import select_layers

pytestmark = pytest.mark.usefixtures("one_thread")

HYBRID = ("qwen3_5", "qwen3_5_moe")
SOFTMAX = (2, 5)
QUESTION = "What is written on the red sign in the picture?"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", HYBRID)
def test_extract_attention_equals_eager_rows_of_the_softmax_layers(family, attn, vlm_of, scene_image):
    """Scores = eager ``output_attentions`` rows of the last prompt token, mean over heads then over the
    softmax layers, at the image-token positions of ``encode_batch``'s inputs (within 1e-5, float32)."""
    vlm, eager = vlm_of(family, attn), vlm_of(family, "eager")
    batch = encode_batch(vlm, [scene_image], QUESTION)
    assert vlm.layer_kinds.attention == SOFTMAX
    with torch.inference_mode():
        out = eager.model(**batch.inputs, use_cache=False, output_attentions=True)
    assert len(out.attentions) == len(SOFTMAX)  # transformers records the softmax layers only, in order
    image = (batch.inputs["input_ids"][0] == eager.model.config.image_token_id).nonzero().flatten()  # [n]
    rows = torch.stack([a[0, :, -1].float().mean(0) for a in out.attentions])  # [A, N] head means
    for layers, index in ((SOFTMAX, [0, 1]), ((5,), [1])):
        got = extract_attention(vlm, [scene_image], QUESTION, layers)
        expected = rows[index].mean(0)[image]  # [n]
        assert got.layers == layers and got.scores.shape == (1, image.numel()) == (1, got.geometry.n_tokens)
        assert (got.scores[0] - expected).abs().max().item() <= 1e-5
        assert got.scores[0].sum() > 0


def test_default_layers_are_the_softmax_layers_and_linear_layers_are_refused(vlm_of, scene_image):
    vlm = vlm_of("qwen3_5")
    kinds = vlm.layer_kinds
    assert [k.kind for k in kinds.layers] == ["linear_attention"] * 2 + ["full_attention"] + [
        "linear_attention"
    ] * 2 + ["full_attention"]
    assert set(decoder_attention_modules(vlm.model)) == set(SOFTMAX)  # linear layers have no module to capture
    for mode in (None, "preset", "all"):
        assert select_layers(mode, kinds, vlm.name).layers == SOFTMAX
    assert select_layers("deepest_half", kinds).layers == (5,)
    assert extract_attention(vlm, [scene_image], QUESTION, "all").layers == SOFTMAX
    refused = r"layer\(s\) \[1\] are linear_attention layers, .*softmax-attention layers \[2, 5\]"
    with pytest.raises(ValueError, match=refused):
        extract_attention(vlm, [scene_image], QUESTION, [1, 2])
    with pytest.raises(ValueError, match=r"layer\(s\) \[0, 4\] are linear_attention"):
        with capture_attention_rows(vlm.model, [0, 4, 5]):
            pass
    # the recorder holds exactly the softmax layers after a full forward pass
    inputs = encode_batch(vlm, [scene_image], QUESTION).inputs
    with torch.inference_mode(), capture_attention_rows(vlm.model, SOFTMAX) as recorder:
        vlm.model(**inputs, use_cache=False)
    assert set(recorder.rows) == set(SOFTMAX)


def test_profiling_ranks_the_softmax_layers_only(vlm_of, scene_image, monkeypatch):
    from vea_engine import profiling
    from vea_engine.decoder import kinds_from_config
    from vea_engine.geometry import ImageGeometry
    from vea_engine.profiling import layer_token_scores, profile_layers

    vlm = vlm_of("qwen3_5")
    scores, geometry = layer_token_scores(vlm, scene_image, QUESTION)
    assert scores.shape == (len(SOFTMAX), geometry.n_tokens)  # one row per softmax layer
    # 8 layers, softmax at 3 and 7: layer 3 ranks the evidence token last, layer 7 first
    kinds = kinds_from_config(types.SimpleNamespace(num_hidden_layers=8, layer_types=["linear_attention"] * 3 + [
        "full_attention"] + ["linear_attention"] * 3 + ["full_attention"]))  # fmt: skip
    rows = torch.tensor([[0.1, 0.4, 0.3, 0.2], [0.9, 0.1, 0.0, 0.0]])  # [A, n_tokens]
    grid = ImageGeometry.single_grid(2, 2, (20, 20), (20, 20), (0, 0, 20, 20))
    monkeypatch.setattr(profiling, "layer_token_scores", lambda vlm, image, question: (rows, grid))
    fake = types.SimpleNamespace(num_layers=8, layer_kinds=kinds, name="fake")
    sample = types.SimpleNamespace(id="s", image=None, question="q", boxes=((0.0, 0.0, 10.0, 10.0),))
    profile = profile_layers(fake, [sample], top_fraction=0.5)  # half of the 2 softmax layers (not of all 8)
    assert profile.layers == (7,) and profile.num_layers == 8
    assert profile.auroc[3] == 0.0 and profile.auroc[7] == 1.0
    assert all(math.isnan(profile.auroc[i]) for i in range(8) if i not in (3, 7))
    assert profile_layers(fake, [sample], top_fraction=1.0).layers == (3, 7)


@pytest.mark.parametrize(("family", "depth"), [("qwen3_5", 32), ("qwen3_5_moe", 40)])
def test_released_depths_on_the_meta_device(family, depth):
    """transformers' default configs have the released shapes (Qwen3.5-9B: 32 layers; Qwen3.5-35B-A3B: 40,
    softmax attention every fourth layer, ``full_attention_interval`` 4): built on the meta device, the decoder
    walk finds the attention layers and capture's modules exactly there, and the default layers are those."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vea_engine.decoder import layer_kinds

    config = AutoConfig.for_model(family)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    kinds = layer_kinds(model)
    attention = tuple(range(3, depth, 4))  # 3, 7, 11, ...
    assert kinds.num_layers == depth and kinds.attention == attention
    assert set(decoder_attention_modules(model)) == set(attention)
    assert all(next(m.parameters()).is_meta for m in decoder_attention_modules(model).values())
    assert select_layers(None, kinds, f"Qwen/{family}").layers == attention
    assert select_layers("deepest_half", kinds).layers == attention[len(attention) // 2 :]
