"""Qwen3-VL-MoE: Qwen3-VL's vision side and token layout with a mixture-of-experts decoder.

The adapter is Qwen3-VL's; attention (and so capture) is unchanged by the experts. The
tiny checkpoint is Qwen3-VL's tiny one with its decoder config made sparse.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    from vea_engine.testing.tiny_models import tiny_config, tiny_processor

    dense = tiny_config("qwen3_vl").to_dict()
    text = {k: v for k, v in dense["text_config"].items() if k not in ("model_type", "architectures")}
    text.update(num_local_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    vision = {k: v for k, v in dense["vision_config"].items() if k != "model_type"}
    ids = {k: dense[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config = Qwen3VLMoeConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **ids)
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching other tests' random state
        torch.manual_seed(0)
        model = Qwen3VLMoeForConditionalGeneration(config)
    for module in model.modules():  # large weights (like the other tiny models): attention far from uniform
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.2, generator=generator)
    folder = tmp_path_factory.mktemp("qwen3_vl_moe-tiny")
    model.save_pretrained(folder)
    tiny_processor("qwen3_vl").save_pretrained(folder)
    return folder


def test_qwen3_vl_moe_capture_equals_eager(moe_dir, scene_image):
    from vea_engine.capture import capture_attention_rows
    from vea_engine.families.qwen3_vl import Qwen3VLAdapter
    from vea_engine.inputs import encode_batch
    from vea_engine.loading import load_vlm

    vlm = load_vlm(moe_dir, dtype="float32", attn_implementation="sdpa")
    eager = load_vlm(moe_dir, dtype="float32", attn_implementation="eager")
    assert vlm.model_type == "qwen3_vl_moe" and type(vlm.adapter) is Qwen3VLAdapter
    batch = encode_batch(vlm, [scene_image], "What is written on the red sign?")
    assert batch.positions[0].numel() == batch.geometry.n_tokens
    layers = tuple(range(vlm.num_layers))
    with torch.inference_mode():
        out = eager.model(**batch.inputs, use_cache=False, output_attentions=True)
        expected = torch.stack([a.float().mean(1)[:, -1] for a in out.attentions])  # [L, B, N]
        with capture_attention_rows(vlm.model, layers, (-1,)) as recorder:
            vlm.model(**batch.inputs, use_cache=False)
    assert (recorder.stacked()[:, :, -1] - expected).abs().max().item() <= 1e-5
