"""Prompts with two images (original + crop) on every family whose processor takes several.

For each image of the prompt the image tokens form their own span (a non-image token
between the images) with exactly the count of that image's token layout, checked against
the processor's own outputs (Qwen's ``image_grid_thw``, Gemma 3's ``mm_tokens_per_image``,
InternVL's tiles, Idefics3's tile tokens, OneVision's untiled base grid, Llama 4's tiles, Mistral 3's
``image_sizes``), and the model itself accepts the prompt (it checks image features against image tokens).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ALL_FAMILIES
from vea_engine.inputs import encode_batch, on_model
from vea_engine.testing.tiny_models import FAMILIES

pytestmark = pytest.mark.usefixtures("one_thread")


def _images():
    rng = np.random.default_rng(1)
    first = Image.fromarray((rng.random((150, 200, 3)) * 255).astype(np.uint8))
    second = Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8))
    return first, second


def _runs(positions: torch.Tensor) -> list[int]:
    """Lengths of the runs of consecutive positions."""
    cuts = (positions[1:] - positions[:-1] > 1).nonzero(as_tuple=True)[0].tolist()
    bounds = [0, *(c + 1 for c in cuts), len(positions)]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _single_count(vlm, image) -> int:
    """Image tokens of ``image`` alone: its token layout's count (checked against the prompt by encode_batch)."""
    batch = encode_batch(vlm, [image], "What is it?")
    return batch.geometry.n_tokens


def _processor_count(vlm, inputs, k: int, image) -> int:
    """The count of image ``k`` as the processor's own outputs give it."""
    family = vlm.adapter.family
    if family in ("qwen_vl", "qwen3_vl", "glm4v", "qwen3_5"):
        return int(inputs["image_grid_thw"][k].prod()) // vlm.adapter.merge_size**2
    if family == "gemma3":
        return int(vlm.model.config.mm_tokens_per_image)
    if family == "internvl":
        rows, cols = vlm.adapter.tile_grid(image.size[::-1])
        return (rows * cols + (rows * cols > 1)) * vlm.adapter.tokens_per_side**2
    if family in ("idefics3", "smolvlm"):
        out = vlm.processor.image_processor(images=[[image]], return_tensors="pt", return_row_col_info=True)
        rows, cols = int(out["rows"][0][0]), int(out["cols"][0][0])
        return (rows * cols + 1) * vlm.adapter.tokens_per_side**2
    if family == "llava_onevision":
        return vlm.adapter.multi_image_placeholders
    if family == "llama4":  # every tile the processor cuts (the global view included) is one token grid
        tiles = vlm.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].shape[0]
        return tiles * vlm.adapter.tokens_per_side**2
    if family == "mistral3":  # one [IMG] per 28-px cell of the resized image; row breaks are other tokens
        h, w = (int(v) for v in inputs["image_sizes"][k])
        return (h // vlm.adapter.cell) * (w // vlm.adapter.cell)
    if family == "lfm2_vl":  # the processor's own token count for this image size
        return int(vlm.processor._get_num_multimodal_tokens([image.size[::-1]])["num_image_tokens"][0])
    if family == "gemma4":  # the image's real patches (position -1 = padding), pooled k x k
        real = (inputs["image_position_ids"][k] >= 0).all(dim=-1).sum()
        return int(real) // vlm.adapter.pooling**2
    raise AssertionError(family)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_two_image_prompt_has_one_span_per_image_with_the_layout_count(family, vlm_of):
    vlm = vlm_of(family)
    first, second = _images()
    if not vlm.adapter.multi_image:
        with pytest.raises(ValueError, match="takes one image per prompt"):
            vlm.adapter.encode_multi([[first, second]], ["What is it?"])
        return
    inputs = vlm.adapter.encode_multi([[first, second], [second, first]], ["What is it?", "And here?"])
    for row, pair in enumerate(([first, second], [second, first])):
        ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()]
        positions = (ids == vlm.adapter.image_token_id).nonzero(as_tuple=True)[0]
        expected = [
            _processor_count(vlm, inputs if row == 0 else _swap(inputs), k, image) for k, image in enumerate(pair)
        ]
        if family != "llava_onevision":  # OneVision does not tile the images of a multi-image prompt
            assert expected == [_single_count(vlm, image) for image in pair], family
        assert len(positions) == sum(expected), (family, len(positions), expected)
        # the runs of image tokens add up to each image in turn: a non-image token separates the two images
        runs, cumulative = _runs(positions), np.cumsum(_runs(positions)).tolist()
        assert expected[0] in cumulative and runs, (family, runs, expected)
        assert int(positions[expected[0]] - positions[expected[0] - 1]) > 1, family
    with torch.inference_mode():  # the model matches image features to image tokens and refuses a mismatch
        vlm.model.generate(**on_model(vlm, inputs), max_new_tokens=1, do_sample=False)  # Llama 4's pixels: bfloat16


def _swap(inputs):
    """The per-image outputs of the second row (Qwen's ``image_grid_thw``, Pixtral's ``image_sizes``), in that
    row's order."""
    return {**inputs, **{k: inputs[k][2:] for k in ("image_grid_thw", "image_sizes") if k in inputs}}


@pytest.mark.parametrize("family", FAMILIES)
def test_one_image_chat_text_is_unchanged(family, vlm_of):
    adapter = vlm_of(family).adapter
    prompt = "Describe it."
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if getattr(adapter.processor, "chat_template", None):
        expected = adapter.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **adapter.chat_template_options
        )
    else:
        expected = adapter.fallback_template.format(
            image=getattr(adapter.processor, "image_token", "<image>"), prompt=prompt
        )
    assert adapter.chat_text(prompt) == adapter.chat_text(prompt, 1) == expected
    assert adapter.chat_text(prompt, 2) != expected
