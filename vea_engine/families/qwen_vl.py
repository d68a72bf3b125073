"""Qwen2-VL and Qwen2.5-VL: dynamic resolution, 2x2 spatial merge.

The processor resizes an image to ``(h, w)`` multiples of ``patch * merge``
(``smart_resize``), cuts ``patch``-pixel patches and the merger fuses each
``merge x merge`` block into one language token, emitted row-major. So the
token grid is ``(grid_h / merge) x (grid_w / merge)`` from ``image_grid_thw``,
each token covering a ``(patch * merge)``-pixel square of the resized image,
which is the canvas. The canvas shows the whole original (plain resize).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..geometry import Box, ImageGeometry
from .base import FamilyAdapter, pil_resize, size_value


class QwenVLAdapter(FamilyAdapter):
    family = "qwen_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")

    @property
    def _image_processor(self) -> Any:
        return self.processor.image_processor

    @property
    def patch_size(self) -> int:
        return int(self._image_processor.patch_size)

    @property
    def merge_size(self) -> int:
        return int(self._image_processor.merge_size)

    def canvas_hw(self, original_hw: tuple[int, int]) -> tuple[int, int]:
        """``smart_resize`` of the processor for an original ``(H0, W0)``."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        ip = self._image_processor
        size = getattr(ip, "size", None)
        min_pixels = size_value(size, "shortest_edge") or getattr(ip, "min_pixels", None)
        max_pixels = size_value(size, "longest_edge") or getattr(ip, "max_pixels", None)
        return smart_resize(
            original_hw[0],
            original_hw[1],
            factor=self.patch_size * self.merge_size,
            min_pixels=int(min_pixels),
            max_pixels=int(max_pixels),
        )

    def render(self, image: np.ndarray) -> tuple[np.ndarray, Box]:
        h0, w0 = image.shape[:2]
        canvas = pil_resize(image, self.canvas_hw((h0, w0)))
        return canvas, (0.0, 0.0, float(w0), float(h0))

    def geometry(self, inputs: Any, index: int, original_hw: tuple[int, int], canvas_in_original: Box) -> ImageGeometry:
        _, gh, gw = (int(v) for v in inputs["image_grid_thw"][index])  # [t, h, w] in patches
        m = self.merge_size
        return ImageGeometry.single_grid(
            rows=gh // m,
            cols=gw // m,
            canvas_hw=(gh * self.patch_size, gw * self.patch_size),
            original_hw=original_hw,
            canvas_in_original=canvas_in_original,
        )
