"""Mistral 3 (Mistral Small 3.x): Pixtral vision at variable resolution, 2x2 patch merger.

What the processor and the model do with an ``H0 x W0`` image (transformers'
``PixtralImageProcessor``, ``PixtralProcessor`` and ``Mistral3PatchMerger``):

1. the image is scaled down, aspect kept, until its longest side is at most
   ``size["longest_edge"]`` (``L``, 1540 in Mistral Small 3.1; smaller images keep
   their size), then both sides are rounded *up* to multiples of the token cell
   ``c = patch * spatial_merge_size`` (28 px) and the image is resized to that
   ``h x w`` (the processor's ``image_sizes``);
2. the vision tower cuts ``patch``-pixel patches, the merger fuses each ``2 x 2``
   block into one token: a row-major ``(h / c) x (w / c)`` grid;
3. the prompt holds one ``[IMG]`` per token, an ``[IMG_BREAK]`` after each token row
   but the last and ``[IMG_END]`` after it. The row-break and end tokens have their
   own ids: they are text tokens, not image tokens, so :meth:`image_token_positions`
   (the ``[IMG]`` positions) leaves them out of the grid.

**Canvas**: the processor's own ``h x w`` rendering (its pixels de-normalised),
showing the whole original. Fed back to the processor it is not resized again
(both sides are multiples of ``c`` and at most ``L``), so it is laid out as the
same grid on the same pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from ..geometry import Canvas, Frame, TokenLayout
from .base import FamilyAdapter
from .common import processor_pixels_to_uint8, size_value


class Mistral3Adapter(FamilyAdapter):
    family = "mistral3"
    model_types = ("mistral3",)
    nested_images = True
    fallback_template = "<s>[INST]{image}{prompt}[/INST]"
    multi_image = True

    @property
    def cell(self) -> int:
        """Side in pixels of one token's cell: ``patch_size * spatial_merge_size``."""
        return int(self.config.vision_config.patch_size) * int(self.config.spatial_merge_size)

    @property
    def longest_edge(self) -> int:
        """The processor's largest image side ``L`` (else the vision tower's ``image_size``)."""
        side = size_value(getattr(self.processor.image_processor, "size", None), "longest_edge")
        return int(side or self.config.vision_config.image_size)

    @property
    def input_side(self) -> int:
        """The longest side ``L`` an image is seen at (whole, in one pass)."""
        return self.longest_edge

    def image_size_problem(self, hw: tuple[int, int]) -> str | None:
        # the processor scales an image longer than L down by long / L (flooring): a short side under 1 px fails
        h, w = hw
        L = self.longest_edge
        ratio = max(h / L, w / L)
        if ratio > 1 and min(math.floor(h / ratio), math.floor(w / ratio)) < 1:
            return f"{self.family}'s processor scales the long side to {L} px, leaving the short side under 1 px"
        return None

    def _check_processor(self) -> None:
        """The processor's token cell must be the model's (else tokens and features disagree)."""
        patch = getattr(self.processor, "patch_size", None)
        merge = getattr(self.processor, "spatial_merge_size", None)
        if patch is not None and merge is not None and int(patch) * int(merge) != self.cell:
            raise ValueError(
                f"{self.family}: the processor cuts {int(patch) * int(merge)}-px token cells (patch_size={patch}, "
                f"spatial_merge_size={merge}) but the model merges {self.cell}-px cells; fix processor_config.json "
                "of the checkpoint so that its patch_size and spatial_merge_size are the model config's."
            )

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        self._check_processor()
        ip = self.processor.image_processor
        cell = {"height": self.cell, "width": self.cell}
        out = ip(images=[Image.fromarray(image)], patch_size=cell, return_tensors="pt")
        h, w = (int(v) for v in out["image_sizes"][0])
        canvas = processor_pixels_to_uint8(out["pixel_values"][0, :, :h, :w], ip, rounding)  # [h, w, 3]
        return Canvas(canvas, Frame.whole(image.shape[:2], (h, w)))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        self._check_processor()
        h, w = (int(v) for v in inputs["image_sizes"][index])  # the resized image, multiples of the cell
        return TokenLayout.single_grid(h // self.cell, w // self.cell, (h, w))


__all__ = ["Mistral3Adapter"]
