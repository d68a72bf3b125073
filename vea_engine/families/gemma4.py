"""Gemma 4: variable resolution within a soft-token budget, patches pooled ``k x k`` into one grid.

The image processor keeps the aspect ratio: it resizes the image to the largest
``(h, w)``, both multiples of ``k * patch`` (``3 * 16 = 48`` px in the released
models), that holds at most ``max_soft_tokens * k^2`` patches (280 tokens by default),
then cuts ``patch``-px patches row-major and pads them to that budget. The vision
tower gives each patch its ``(x, y)`` position (``image_position_ids``, ``-1`` for
padding) and its pooler averages every ``k x k`` block of patches into one soft
token, row-major: ``(h / (k * patch)) x (w / (k * patch))`` ``<|image|>`` tokens,
written between ``<|image>`` and ``<image|>`` (which are not image tokens). So the
canvas is the resized image, showing the whole original, and token ``(r, c)``
covers the ``(k * patch)``-px square ``(r, c)`` of it. As in the reference code for
fixed-size families, the canvas is the processor's own pixels (here un-patchified;
the processor does not normalise them): fed back, it is not resized again.

The target size depends on the aspect ratio alone, and the rounding to multiples of
``k * patch`` changes it: a very elongated image (e.g. 4000 x 300) is squashed
enough that its resized copy would be resized to another grid. Then the canvas is
the original itself, which the processor maps to the same grid by construction,
each token covering a ``(H0 / rows) x (W0 / cols)`` cell of it.

The text decoder mixes sliding-window and full layers (5:1), and in the smaller
models the last layers reuse the keys and values of the last earlier layer of
their kind (KV sharing); image tokens attend to each other bidirectionally in the
sliding layers. The captured rows are computed from the queries, keys and mask
each layer really attends with, so they equal eager attention on every layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from ..geometry import Canvas, Frame, TokenLayout
from .base import FamilyAdapter
from .common import processor_pixels_to_uint8


class Gemma4Adapter(FamilyAdapter):
    family = "gemma4"
    model_types = ("gemma4",)
    nested_images = True
    fallback_template = "<bos><|turn>user\n{image}{prompt}<turn|>\n<|turn>model\n"
    multi_image = True

    @property
    def patch_size(self) -> int:
        return int(self._image_processor.patch_size)

    @property
    def pooling(self) -> int:
        """Side ``k`` of the square of patches one token pools."""
        return int(self._image_processor.pooling_kernel_size)

    @property
    def input_side(self) -> int:
        """The side of the canvas of a square image: the most tokens per side whose square fits the budget
        (``isqrt(max_soft_tokens)``), times ``k * patch`` px (768 at the released 280 tokens)."""
        return math.isqrt(int(self._image_processor.max_soft_tokens)) * self.pooling * self.patch_size

    def _patch_grid(self, positions: Any) -> tuple[int, int]:
        """``(rows, cols)`` of patches from one image's ``image_position_ids`` ``[max_patches, 2]`` (x, y; -1 = pad)."""
        real = positions[(positions >= 0).all(dim=-1)]  # [n, 2]
        if real.numel() == 0:
            raise ValueError("gemma4: the processor returned an image without patches.")
        return int(real[:, 1].max()) + 1, int(real[:, 0].max()) + 1

    def resized_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The ``(h, w)`` the image processor resizes an ``(H, W)`` image to."""
        from transformers.models.gemma4.image_processing_gemma4 import get_aspect_ratio_preserving_size

        ip = self._image_processor
        patches = int(ip.max_soft_tokens) * self.pooling**2
        return get_aspect_ratio_preserving_size(hw[0], hw[1], self.patch_size, patches, self.pooling)

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        ip = self._image_processor
        out = ip(images=[Image.fromarray(image)], return_tensors="pt")
        rows, cols = self._patch_grid(out["image_position_ids"][0])
        p = self.patch_size
        if self.resized_hw((rows * p, cols * p)) != (rows * p, cols * p):  # squashed: resized again when fed back
            return Canvas(np.ascontiguousarray(image), Frame.whole(image.shape[:2], image.shape[:2]))
        patches = out["pixel_values"][0, : rows * cols]  # [rows * cols, p * p * 3] row-major, each (y, x, channel)
        pixels = patches.reshape(rows, cols, p, p, 3).permute(4, 0, 2, 1, 3).reshape(3, rows * p, cols * p)
        canvas = processor_pixels_to_uint8(pixels, ip, rounding)  # [H, W, 3]
        return Canvas(canvas, Frame.whole(image.shape[:2], canvas.shape[:2]))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        rows, cols = self._patch_grid(inputs["image_position_ids"][index])
        k = self.pooling
        if rows % k or cols % k:
            raise ValueError(f"gemma4: a {rows} x {cols} patch grid is not pooled by {k} x {k}; check the processor.")
        return TokenLayout.single_grid(rows // k, cols // k, frame.canvas_hw)
