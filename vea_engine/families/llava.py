"""LLaVA-1.5: shortest-edge resize, centre crop, one fixed grid of CLIP patches.

The CLIP image processor resizes the shorter side to ``size["shortest_edge"]``
and centre-crops ``crop_size``; the vision tower cuts ``patch_size`` patches and
(``vision_feature_select_strategy="default"``) drops CLS, so the
``(crop_h / patch) x (crop_w / patch)`` tokens are row-major patches of the
crop, which is the canvas. The canvas shows the central part of the original.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..geometry import Box, ImageGeometry
from .base import FamilyAdapter, size_value


class LlavaAdapter(FamilyAdapter):
    family = "llava"
    model_types = ("llava",)
    fallback_template = "USER: {image}\n{prompt} ASSISTANT:"

    @property
    def _image_processor(self) -> Any:
        return self.processor.image_processor

    @property
    def patch_size(self) -> int:
        size = getattr(self.processor, "patch_size", None) or self.config.vision_config.patch_size
        return int(size)

    @property
    def crop_hw(self) -> tuple[int, int]:
        ip = self._image_processor
        crop = getattr(ip, "crop_size", None) if getattr(ip, "do_center_crop", True) else None
        if crop is not None:
            return size_value(crop, "height"), size_value(crop, "width")
        side = int(self.config.vision_config.image_size)
        return side, side

    def canvas_in_original(self, original_hw: tuple[int, int]) -> Box:
        """The region of the original image the centre crop shows."""
        h0, w0 = original_hw
        ip = self._image_processor
        shortest = size_value(getattr(ip, "size", None), "shortest_edge")
        scale = shortest / min(h0, w0) if (getattr(ip, "do_resize", True) and shortest) else 1.0
        ch, cw = self.crop_hw
        # Crop offsets are taken on the resized image, then mapped back by 1 / scale.
        rh, rw = h0 * scale, w0 * scale
        x0, y0 = (rw - cw) / 2 / scale, (rh - ch) / 2 / scale
        return (x0, y0, x0 + cw / scale, y0 + ch / scale)

    def render(self, image: np.ndarray) -> tuple[np.ndarray, Box]:
        ip = self._image_processor
        pixels = ip(images=[image], return_tensors="pt")["pixel_values"][0].float()  # [3, H, W] normalised
        mean = torch.tensor(ip.image_mean).view(3, 1, 1) if getattr(ip, "do_normalize", True) else 0.0
        std = torch.tensor(ip.image_std).view(3, 1, 1) if getattr(ip, "do_normalize", True) else 1.0
        rescale = float(getattr(ip, "rescale_factor", 1 / 255)) if getattr(ip, "do_rescale", True) else 1.0
        values = (pixels * std + mean) / rescale  # back to 0..255
        canvas = values.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return canvas, self.canvas_in_original(image.shape[:2])

    def geometry(self, inputs: Any, index: int, original_hw: tuple[int, int], canvas_in_original: Box) -> ImageGeometry:
        h, w = inputs["pixel_values"].shape[-2:]
        p = self.patch_size
        return ImageGeometry.single_grid(
            rows=h // p, cols=w // p, canvas_hw=(h, w), original_hw=original_hw, canvas_in_original=canvas_in_original
        )
