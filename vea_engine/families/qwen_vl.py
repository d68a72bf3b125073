"""Qwen2-VL and Qwen2.5-VL: dynamic resolution, 2x2 spatial merge.

The processor resizes an image to ``(h, w)`` multiples of ``patch * merge``
(``smart_resize``, within its pixel budget ``[min_pixels, max_pixels]``), cuts
``patch``-pixel patches and the merger fuses each ``merge x merge`` block into
one language token, emitted row-major. So the token grid is
``(grid_h / merge) x (grid_w / merge)`` from ``image_grid_thw``, each token
covering a ``(patch * merge)``-pixel square of the resized image.

**Canvas** (as the reference code renders it): a PIL resize of the original to
the processor's target size with PIL's default resampling (bicubic), showing
the whole original. The attribution pass itself encodes the original, resized
by the processor's own interpolation, exactly as the base answer does.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..geometry import Canvas, Frame, TokenLayout
from .base import FamilyAdapter
from .common import size_value


class QwenVLAdapter(FamilyAdapter):
    family = "qwen_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    pixel_budget = True
    multi_image = True

    @property
    def patch_size(self) -> int:
        return int(self._image_processor.patch_size)

    @property
    def merge_size(self) -> int:
        return int(self._image_processor.merge_size)

    @property
    def _frames(self) -> int:
        """How many times the processor's pixel budget counts one image (1; GLM-V: its two temporal frames)."""
        return 1

    #: ``smart_resize`` refuses an image whose long side is more than this many times its short side.
    max_aspect: ClassVar[float] = 200.0

    def _aspect_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The ``(H, W)`` whose aspect ratio ``smart_resize`` checks (the image's own)."""
        return hw

    def image_size_problem(self, hw: tuple[int, int]) -> str | None:
        h, w = self._aspect_hw(hw)
        if max(h, w) / min(h, w) > self.max_aspect:
            return f"{self.family}'s processor takes aspect ratios up to {self.max_aspect:g}:1"
        return None

    @property
    def pixel_limits(self) -> tuple[int, int]:
        """The ``(min, max)`` pixels of one image: the processor's budget (``size``, else ``min_pixels`` /
        ``max_pixels``) over the frames it counts per image."""
        ip = self._image_processor
        size = getattr(ip, "size", None)
        low = size_value(size, "shortest_edge") or getattr(ip, "min_pixels", None)
        high = size_value(size, "longest_edge") or getattr(ip, "max_pixels", None)
        return int(low) // self._frames, int(high) // self._frames

    def set_max_pixels(self, max_pixels: int) -> None:
        low, _ = self.pixel_limits
        factor = self.patch_size * self.merge_size
        if int(max_pixels) < max(low, factor * factor):
            raise ValueError(
                f"resolution: {max_pixels} pixels is below this processor's minimum of {max(low, factor * factor)} "
                "pixels; choose a larger pixel count, 'paper' (512*512) or 'checkpoint'."
            )
        ip = self._image_processor
        size = dict(ip.size.items()) if hasattr(ip.size, "items") else dict(vars(ip.size))
        size["longest_edge"] = int(max_pixels) * self._frames
        ip.size = type(ip.size)(**size) if not isinstance(ip.size, dict) else size
        if hasattr(ip, "max_pixels"):
            ip.max_pixels = int(max_pixels) * self._frames

    @property
    def input_side(self) -> int:
        """The side of a square holding the processor's pixel budget (``sqrt(max_pixels)``: 512 under ``paper``)."""
        return math.isqrt(self.pixel_limits[1])

    def canvas_hw(self, original_hw: tuple[int, int]) -> tuple[int, int]:
        """``smart_resize`` of the processor for an original ``(H0, W0)``."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        low, high = self.pixel_limits
        return smart_resize(
            original_hw[0], original_hw[1], factor=self.patch_size * self.merge_size, min_pixels=low, max_pixels=high
        )

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        h0, w0 = image.shape[:2]
        h, w = self.canvas_hw((h0, w0))
        pixels = image if (h, w) == (h0, w0) else np.asarray(Image.fromarray(image).resize((w, h)))  # PIL default
        return Canvas(np.ascontiguousarray(pixels), Frame.whole((h0, w0), (h, w)))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        _, gh, gw = (int(v) for v in inputs["image_grid_thw"][index])  # [t, h, w] in patches
        m = self.merge_size
        return TokenLayout.single_grid(gh // m, gw // m, (gh * self.patch_size, gw * self.patch_size))
