"""PaliGemma 2: a Gemma 2 decoder whose attention logits are soft-capped (``tanh(x / 50) * 50``).

SDPA cannot soft-cap, so transformers refuses it for Gemma 2; ``load_vlm`` loads such a
checkpoint on eager attention, and capture computes the rows with the same soft-capping.
The tiny checkpoint is PaliGemma's tiny one with its decoder swapped for Gemma 2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vea_engine.capture import capture_attention_rows

SOFTCAP = 50.0


@pytest.fixture(scope="module")
def paligemma2_dir(tmp_path_factory):
    from transformers import Gemma2Config, PaliGemmaForConditionalGeneration

    from vea_engine.testing.tiny_models import tiny_config, tiny_processor

    config = tiny_config("paligemma")
    text = config.text_config
    config.text_config = Gemma2Config(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers,
        num_attention_heads=text.num_attention_heads,
        num_key_value_heads=text.num_key_value_heads,
        head_dim=text.head_dim,
        hidden_activation="gelu_pytorch_tanh",
        attn_logit_softcapping=SOFTCAP,
        final_logit_softcapping=30.0,
        query_pre_attn_scalar=text.head_dim,
        sliding_window=4096,
        max_position_embeddings=4096,
        initializer_range=2.0,  # large logits: the cap bites
    )
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching other tests' random state
        torch.manual_seed(0)
        model = PaliGemmaForConditionalGeneration(config)
    folder = tmp_path_factory.mktemp("paligemma2-tiny")
    model.save_pretrained(folder)
    tiny_processor("paligemma").save_pretrained(folder)
    return folder


def test_paligemma2_loads_on_eager_and_capture_applies_the_soft_cap(paligemma2_dir, scene_image):
    from vea_engine.inputs import encode_batch
    from vea_engine.loading import load_vlm

    vlm = load_vlm(paligemma2_dir, dtype="float32", attn_implementation="sdpa")  # Gemma 2 cannot: eager
    assert vlm.model.config.text_config._attn_implementation == "eager"
    batch = encode_batch(vlm, [scene_image], "What is written on the red sign?")
    layers = tuple(range(vlm.num_layers))
    with torch.inference_mode():
        out = vlm.model(**batch.inputs, use_cache=False, output_attentions=True)
        expected = torch.stack([a.float().mean(1)[:, -1] for a in out.attentions])  # [L, B, N] last-token rows
        with capture_attention_rows(vlm.model, layers, (-1,)) as recorder:
            vlm.model(**batch.inputs, use_cache=False)
    got = recorder.stacked()[:, :, -1]  # [L, B, N]
    assert (got - expected).abs().max().item() <= 1e-5
    # the soft-cap changes these rows: without it they would differ
    uncapped = _uncapped_rows(vlm, batch.inputs, layers)
    assert (uncapped - expected).abs().max().item() > 1e-3


def _uncapped_rows(vlm, inputs, layers):
    """The same rows with the cap switched off in the attention modules (to show it matters)."""
    from vea_engine.capture import decoder_attention_modules

    modules = list(decoder_attention_modules(vlm.model).values())
    saved = [m.attn_logit_softcapping for m in modules]
    try:
        for m in modules:
            m.attn_logit_softcapping = None
        with torch.inference_mode():
            out = vlm.model(**inputs, use_cache=False, output_attentions=True)
        return torch.stack([a.float().mean(1)[:, -1] for a in out.attentions])
    finally:
        for m, value in zip(modules, saved, strict=True):
            m.attn_logit_softcapping = value


def test_paligemma2_runs_vea_end_to_end(paligemma2_dir, scene_image):
    from vea_engine.loading import load_vlm
    from vea_engine.pipeline import run_vea

    vlm = load_vlm(paligemma2_dir, dtype="float32")
    result = run_vea(vlm, [np.asarray(scene_image)], "What?", layers=[1, 3], max_new_tokens=2)
    assert result.evidence.shape == (1, 84, 84) and float(result.evidence.max()) == 1.0
    assert set(result.answers) == {"base", "vea"}
