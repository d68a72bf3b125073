"""Carry a mask made on one model's canvas to the image another model answers (delegates)."""

from __future__ import annotations

from typing import Any

import torch

from .geometry import Frame, remap_mask
from .images import images_to_uint8, uint8_to_tensor
from .inputs import render_canvases
from .loading import VLM


def align_mask(
    mask: torch.Tensor,
    source: Frame,
    images: Any,
    target: VLM | None = None,
    fill: float = 0.0,
    rounding: str = "truncate",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry a mask made on one model's canvas to the image another model answers (delegate).

    Args:
        mask: ``[B, h, w]`` on ``source``'s canvas (e.g. from :func:`evidence_map`).
        source: frame of the canvas the mask is on (``AttentionMap.geometry.frame``).
        images: the original images ``[B, H0, W0, C]`` (or a list), the same size the
            mask model was given.
        target: the answering model; None keeps the original image.
        fill: mask value where the source model saw nothing (e.g. cropped away).
        rounding: how the target's de-normalised canvas pixels become uint8.

    Returns:
        ``(mask [B, H, W], image [B, H, W, 3])`` aligned pixel for pixel: the target
        model's canvas rendering of the originals (or the originals themselves).
    """
    source = getattr(source, "frame", source)
    originals = images_to_uint8(images)
    if originals[0].shape[:2] != tuple(source.original_hw):
        raise ValueError(
            f"align mask: the images are {originals[0].shape[1]}x{originals[0].shape[0]} but the mask was made for "
            f"{source.original_hw[1]}x{source.original_hw[0]} originals (W x H); pass the images the mask model saw."
        )
    if target is None:
        return remap_mask(mask, source, None, fill), uint8_to_tensor(originals)
    canvases = render_canvases(target, originals, rounding)
    return remap_mask(mask, source, canvases[0].frame, fill), uint8_to_tensor([c.pixels for c in canvases])
