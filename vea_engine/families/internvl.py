"""InternVL (transformers-native ``-hf`` checkpoints): dynamic tiles plus a thumbnail, pixel shuffle.

The image processor (``GotOcr2ImageProcessor`` with ``crop_to_patches``) picks the
``cols x rows`` tile grid (``min_patches <= cols * rows <= max_patches``) whose
aspect ratio is closest to the image's (``get_optimal_tiled_canvas``), resizes the
image -- aspect ratio *not* kept -- to ``rows * S x cols * S`` (``S`` = the vision
tower's input side, 448 for the released models), cuts it into ``S x S`` tiles
row-major and, when there is more than one tile, appends the whole image squashed
to ``S x S`` (the *thumbnail*). The vision tower drops its CLS token and the pixel
shuffle (``downsample_ratio = 0.5``) merges ``2 x 2`` patches into one token, so
each tile and the thumbnail give a ``S / patch / 2``-square token grid (16 x 16 =
256), emitted row-major between ``<img>`` and ``</img>`` as ``<IMG_CONTEXT>`` tokens.

**Canvas**: the resized ``rows * S x cols * S`` image, showing the whole original.
Its parts are the tiles in order, each covering its own ``S x S`` box, then the
thumbnail covering the whole canvas. Fed back to the processor, the canvas's
aspect ratio is exactly its own grid's (a zero difference, and the tie-break
between equal ratios keeps the grid whose area equals the image's), so it is
neither resized nor re-tiled: the same layout (tested over many sizes).
Overlapping grids (tile and thumbnail) are averaged by
:func:`~vea_engine.attribution.paint_scores`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..geometry import Canvas, Frame, GridPart, TokenLayout
from .base import FamilyAdapter
from .common import processor_pixels_to_uint8, size_value, stitch_tiles


class InternVLAdapter(FamilyAdapter):
    family = "internvl"
    model_types = ("internvl",)
    fallback_template = "<|im_start|>user\n{image}\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    multi_image = True

    @property
    def input_side(self) -> int:
        """A tile's side ``S``."""
        return self.tile

    @property
    def tile(self) -> int:
        size = self.processor.image_processor.size
        return int(size_value(size, "height"))

    @property
    def tokens_per_side(self) -> int:
        patch = self.config.vision_config.patch_size
        patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
        return int(self.tile // patch * float(self.config.downsample_ratio))

    @property
    def crop_to_patches(self) -> bool:
        """Whether the processor tiles: ``InternVLProcessor`` asks for tiles by default, whatever the
        image processor's own ``crop_to_patches`` (False in the released ``-hf`` configs) says."""
        defaults = getattr(type(self.processor), "images_kwargs", None) or {}
        return bool(defaults.get("crop_to_patches", getattr(self.processor.image_processor, "crop_to_patches", False)))

    def tile_grid(self, hw: tuple[int, int]) -> tuple[int, int]:
        """``(rows, cols)`` of tiles the processor cuts an ``(h, w)`` image into (``(1, 1)``: no tiling)."""
        from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

        ip = self.processor.image_processor
        if not self.crop_to_patches or int(ip.max_patches) <= 1:
            return 1, 1
        cols, rows = get_optimal_tiled_canvas(
            tuple(int(v) for v in hw), (self.tile, self.tile), int(ip.min_patches), int(ip.max_patches)
        )
        return int(rows), int(cols)

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        ip = self.processor.image_processor
        rows, cols = self.tile_grid(image.shape[:2])
        pil = Image.fromarray(image)
        pixels = ip(images=[pil], return_tensors="pt", crop_to_patches=rows * cols > 1)["pixel_values"]
        canvas = processor_pixels_to_uint8(stitch_tiles(pixels[: rows * cols], rows, cols), ip, rounding)
        return Canvas(canvas, Frame.whole(image.shape[:2], canvas.shape[:2]))  # the thumbnail comes last

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        S, n = self.tile, self.tokens_per_side
        rows, cols = self.tile_grid(frame.original_hw)
        canvas_hw = (rows * S, cols * S)
        if self.tile_grid(canvas_hw) != (rows, cols):
            raise ValueError(
                f"{self.family}: the {canvas_hw[1]}x{canvas_hw[0]} canvas would be tiled {self.tile_grid(canvas_hw)} "
                f"instead of {(rows, cols)} (rows, cols); this processor configuration is not supported."
            )
        per_image = rows * cols + (1 if rows * cols > 1 else 0)
        n_images = int(inputs["input_ids"].shape[0])
        if inputs["pixel_values"].shape[0] != n_images * per_image:
            raise ValueError(
                f"{self.family}: {inputs['pixel_values'].shape[0]} tiles for {n_images} images, expected "
                f"{per_image} each; the images in one batch must share a size."
            )
        parts = [
            GridPart((r * cols + c) * n * n, n, n, (c * S, r * S, (c + 1) * S, (r + 1) * S))
            for r in range(rows)
            for c in range(cols)
        ]
        if rows * cols > 1:
            parts.append(GridPart(rows * cols * n * n, n, n, (0, 0, cols * S, rows * S)))  # the thumbnail
        return TokenLayout(canvas_hw, tuple(parts))
