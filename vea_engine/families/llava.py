"""LLaVA-1.5: shortest-edge resize, centre crop, one fixed grid of CLIP patches.

The CLIP image processor resizes the shorter side to ``size["shortest_edge"]``
and centre-crops ``crop_size``; the vision tower cuts ``patch_size`` patches and
(``vision_feature_select_strategy="default"``) drops CLS, so the
``(crop_h / patch) x (crop_w / patch)`` tokens are row-major patches of the
crop. **Canvas** (as the reference code renders it): the processor's own
``pixel_values`` de-normalised, i.e. the crop, showing the central part of the
original.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..geometry import Box, Canvas, Frame, TokenLayout
from .base import FamilyAdapter
from .common import processor_canvas, size_value


class FixedGridAdapter(FamilyAdapter):
    """A family whose processor renders every image at one fixed size, one grid of ``patch_size`` patches."""

    @property
    def patch_size(self) -> int:
        return int(self.config.vision_config.patch_size)

    @property
    def input_side(self) -> int:
        """The shorter side of the processor's fixed input (its ``size``, else the vision tower's image size)."""
        size = getattr(self.processor.image_processor, "size", None)
        sides = [v for v in (size_value(size, "height"), size_value(size, "width")) if v]
        return min(sides) if sides else int(self.config.vision_config.image_size)

    def canvas_in_original(self, original_hw: tuple[int, int]) -> Box:
        """The region of the original the canvas shows (default: all of it, squashed)."""
        return (0.0, 0.0, float(original_hw[1]), float(original_hw[0]))

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        pixels = processor_canvas(self.processor.image_processor, image, rounding)
        return Canvas(pixels, Frame(image.shape[:2], pixels.shape[:2], self.canvas_in_original(image.shape[:2])))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        h, w = inputs["pixel_values"].shape[-2:]
        p = self.patch_size
        return TokenLayout.single_grid(h // p, w // p, (h, w))


class LlavaAdapter(FixedGridAdapter):
    family = "llava"
    model_types = ("llava",)
    fallback_template = "USER: {image}\n{prompt} ASSISTANT:"

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

    @property
    def input_side(self) -> int:
        """The shorter side of the centre crop."""
        return min(self.crop_hw)

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
