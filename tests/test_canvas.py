"""Canvases as the reference code renders them: de-normalised processor pixels, truncated to uint8."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vea_engine.families.common import processor_pixels_to_uint8

CLIPLIKE = SimpleNamespace(
    image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_normalize=True, do_rescale=True, rescale_factor=1 / 255
)


def test_denormalise_truncates_by_hand():
    # x * 0.5 + 0.5, clamp to [0, 1], * 255: 0.0 -> 127.5, -1 -> 0, 1 -> 255, 1.2 -> 255 (clamped), 0.004 -> 128.01
    pixels = torch.tensor([0.0, -1.0, 1.0, 1.2, 0.004, -0.004]).view(1, 6).expand(3, 1, 6).clone()  # [3, 1, 6]
    truncated = processor_pixels_to_uint8(pixels, CLIPLIKE)[0, :, 0]
    rounded = processor_pixels_to_uint8(pixels, CLIPLIKE, rounding="round")[0, :, 0]
    assert truncated.tolist() == [127, 0, 255, 255, 128, 126]
    assert rounded.tolist() == [128, 0, 255, 255, 128, 127]
    with pytest.raises(ValueError, match="rounding must be one of \\('truncate', 'round'\\)"):
        processor_pixels_to_uint8(pixels, CLIPLIKE, rounding="nearest")


def _reference_canvas(pixel_values: torch.Tensor, image_processor) -> np.ndarray:
    """The reference's rendering, written out: ``(x * std + mean).clamp(0, 1) * 255`` cast to uint8, float32."""
    mean = torch.tensor(image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(3, 1, 1)
    return ((pixel_values * std + mean).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("family", ["llava", "gemma3"])
def test_fixed_size_canvas_is_the_references(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    image = np.asarray(scene_image)
    ip = vlm.processor.image_processor
    pixel_values = vlm.processor(images=[scene_image], text=[vlm.adapter.chat_text("Q")], return_tensors="pt")[
        "pixel_values"
    ][0]
    canvas = vlm.adapter.render(image)
    assert np.array_equal(canvas.pixels, _reference_canvas(pixel_values, ip))
    rounded = vlm.adapter.render(image, rounding="round").pixels.astype(int)
    below = rounded - canvas.pixels.astype(int)
    assert set(np.unique(below).tolist()) <= {0, 1}  # truncation is at most one level below rounding
    assert below.mean() > 0.02, "a share of values sit one level below the rounded value"


def test_qwen_canvas_is_a_pil_default_resize(vlm_of, scene_image):
    vlm = vlm_of("qwen2_5_vl")
    big = scene_image.resize((600, 450))  # above the pixel budget: the processor shrinks it
    canvas = vlm.adapter.render(np.asarray(big))
    h, w = canvas.frame.canvas_hw
    assert (h, w) != (450, 600) and h % 28 == 0 and w % 28 == 0
    assert np.array_equal(canvas.pixels, np.asarray(big.resize((w, h), Image.Resampling.BICUBIC)))
    assert canvas.frame.box == (0.0, 0.0, 600.0, 450.0)
