"""Helpers shared by the family adapters of tiled and fixed-size processors.

* :func:`processor_pixels_to_uint8` turns the processor's normalised
  ``pixel_values`` back into the uint8 pixels the model was given, so an adapter
  can render its canvas with the processor's own resize (backend-exact) instead of
  re-implementing it;
* :func:`encode_chat` encodes chat texts whose template already starts with the
  BOS token without the tokenizer adding a second one (Gemma, InternVL, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image


def processor_pixels_to_uint8(pixels: torch.Tensor, image_processor: Any) -> np.ndarray:
    """Undo the processor's rescale + normalise.

    Args:
        pixels: ``[..., 3, H, W]`` normalised pixel values from ``image_processor``.
        image_processor: the processor that made them (its mean / std / rescale factor).

    Returns:
        ``[..., H, W, 3]`` uint8 (rounded, clipped).
    """
    ip = image_processor
    values = pixels.detach().to("cpu", torch.float64)
    if getattr(ip, "do_normalize", True):
        mean = torch.as_tensor(ip.image_mean, dtype=torch.float64).view(3, 1, 1)
        std = torch.as_tensor(ip.image_std, dtype=torch.float64).view(3, 1, 1)
        values = values * std + mean
    if getattr(ip, "do_rescale", True):
        values = values / float(getattr(ip, "rescale_factor", 1 / 255))
    return values.round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).numpy()


def encode_chat(processor: Any, texts: list[str], images: list[Image.Image], nested: bool = False) -> Any:
    """``processor(text=texts, images=images)``, left-padded, without a second BOS.

    When every chat text already starts with the tokenizer's BOS token (templates
    that write ``{{ bos_token }}``), the tokenizer is told not to add its own.
    ``nested`` passes the images as one list per text (processors that would
    otherwise read a flat list as several images of the first text).
    """
    tokenizer = processor.tokenizer
    bos = getattr(tokenizer, "bos_token", None)
    extra = {"add_special_tokens": False} if bos and all(t.startswith(bos) for t in texts) else {}
    batch = [[image] for image in images] if nested else images
    return processor(text=texts, images=batch, return_tensors="pt", padding=True, **extra)


def check_box(family: str, box: tuple[float, float, float, float], canvas_hw: tuple[int, int]) -> tuple[int, ...]:
    """A token grid's canvas box as integers; ValueError unless it lies on whole pixels inside the canvas."""
    H, W = canvas_hw
    rounded = tuple(int(round(v)) for v in box)
    x0, y0, x1, y1 = rounded
    off_pixels = max(abs(a - b) for a, b in zip(rounded, box, strict=True)) > 1e-6
    if off_pixels or not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
        raise ValueError(
            f"{family}: a token grid covers {tuple(round(v, 2) for v in box)} of a {W}x{H} (W x H) input, not whole "
            "pixels inside it; the image given to the processor is not this adapter's rendering. Pass images "
            "through adapter.render() (extract_attention does) before encoding them."
        )
    return rounded
