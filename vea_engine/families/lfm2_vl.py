"""LFM2-VL: SigLIP2 NaFlex tower at variable resolution, tiles plus a thumbnail for large images.

What transformers' ``Lfm2VlImageProcessor`` / ``Lfm2VlProcessor`` and the model do with an
``H0 x W0`` image (``p`` = ``encoder_patch_size`` 16, ``f`` = ``downsample_factor`` 2, token
cells of ``p * f`` = 32 px):

* **small image** (at most ``max_image_tokens * (p * f)**2 * max_pixels_tolerance`` pixels
  after rounding to 32-px multiples): squashed to ``h x w`` (``smart_resize``: multiples of
  32 px with ``min_image_tokens..max_image_tokens`` tokens); one row-major ``(h / 32) x
  (w / 32)`` grid;
* **large image**: squashed onto a ``rows x cols`` grid of ``tile_size`` tiles (the grid whose
  aspect ratio is closest, ``min_tiles..max_tiles`` tiles), each tile a ``(T / 32)``-square
  grid, row-major tiles; then (``use_thumbnail``) a thumbnail resized like a small image,
  one more grid over the whole image.

The prompt wraps each image in ``<|image_start|>`` / ``<|image_end|>`` and precedes each tile
with ``<|img_row_R_col_C|>`` and the thumbnail with ``<|img_thumbnail|>``: tokens with ids of
their own, so :meth:`image_token_positions` (the ``<image>`` positions) leaves them out of the
grids.

**Canvas: the original itself.** The processor's resize depends on the input's own size in
ways no re-rendered canvas keeps (the thumbnail is smart-resized from the input's aspect
ratio, and the split threshold counts the input's pixels), so the canvas is the original
image, which is trivially laid out as the same grids when fed back. The grids lie on it as the
processor's squash puts them: the single grid and the thumbnail cover the whole canvas, tile
``(r, c)`` covers ``[c * W0 / cols, (c + 1) * W0 / cols) x [r * H0 / rows, ...)``, rounded to
whole pixels (at most half a pixel off at inner tile edges). Tiles and thumbnail are averaged
where they overlap (:func:`~vea_engine.attribution.paint_scores`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry import Canvas, Frame, GridPart, TokenLayout
from .base import FamilyAdapter

#: Image processor settings that decide the layout (all attributes of ``Lfm2VlImageProcessor``).
_LAYOUT_FIELDS = (
    "downsample_factor",
    "min_tiles",
    "max_tiles",
    "min_image_tokens",
    "max_image_tokens",
    "encoder_patch_size",
    "tile_size",
    "max_pixels_tolerance",
)


class Lfm2VlAdapter(FamilyAdapter):
    family = "lfm2_vl"
    model_types = ("lfm2_vl",)
    nested_images = True
    fallback_template = "<|startoftext|><|im_start|>user\n{image}{prompt}<|im_end|>\n<|im_start|>assistant\n"
    multi_image = True

    @property
    def input_side(self) -> int:
        """A tile's side ``T`` (``tile_size``)."""
        return int(self._image_processor.tile_size)

    def image_size_problem(self, hw: tuple[int, int]) -> str | None:
        # a very elongated image keeps a short side of one token cell: its thumbnail then holds more patches
        # than the processor pads its tiles to, and tiles and thumbnail cannot be stacked
        settings = self._layout_settings()
        split, _, _, height, width = self._image_processor._get_split_layout(*hw, **settings)
        patch = int(settings["encoder_patch_size"])
        patches, limit = (height // patch) * (width // patch), int(self._image_processor.max_num_patches)
        if split and getattr(self._image_processor, "use_thumbnail", True) and patches > limit:
            return f"{self.family}'s processor would cut {patches} patches from its thumbnail, more than its {limit}"
        return None

    def _layout_settings(self) -> dict[str, Any]:
        """The processor's layout settings, checked against the model (patch size and unshuffle factor)."""
        ip = self._image_processor
        settings = {name: getattr(ip, name) for name in _LAYOUT_FIELDS}
        if not getattr(ip, "do_image_splitting", True):
            settings["min_tiles"] = settings["max_tiles"] = 1
        model = (int(self.config.vision_config.patch_size), int(self.config.downsample_factor))
        if (int(settings["encoder_patch_size"]), int(settings["downsample_factor"])) != model:
            raise ValueError(
                f"{self.family}: the image processor cuts {settings['encoder_patch_size']}-px patches unshuffled by "
                f"{settings['downsample_factor']}, but the model's are {model[0]} px and {model[1]}; fix "
                "preprocessor_config.json of the checkpoint (encoder_patch_size, downsample_factor)."
            )
        return settings

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        """The original itself (see module docstring); ``rounding`` has nothing to round."""
        pixels = np.array(image, dtype=np.uint8, order="C", copy=True)  # [H0, W0, 3], not the caller's array
        return Canvas(pixels, Frame.whole(image.shape[:2], image.shape[:2]))

    def grids(self, original_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``((rows, cols) of tiles, (h, w) tokens per tile, (h, w) tokens of the thumbnail or single grid)``
        for an ``(H0, W0)`` image, as the processor lays it out (``(1, 1)`` tiles: not split)."""
        settings = self._layout_settings()
        split, rows, cols, height, width = self._image_processor._get_split_layout(*original_hw, **settings)
        cell = int(settings["encoder_patch_size"]) * int(settings["downsample_factor"])
        tile = math.ceil(
            int(settings["tile_size"]) // int(settings["encoder_patch_size"]) / settings["downsample_factor"]
        )
        whole = (height // cell, width // cell)
        return ((rows, cols) if split else (1, 1)), (tile, tile), whole

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        H, W = frame.canvas_hw  # the original
        (rows, cols), (th, tw), (gh, gw) = self.grids(frame.original_hw)
        if (rows, cols) == (1, 1):
            return TokenLayout.single_grid(gh, gw, (H, W))
        xs = [round(c * W / cols) for c in range(cols + 1)]
        ys = [round(r * H / rows) for r in range(rows + 1)]
        parts = [
            GridPart((r * cols + c) * th * tw, th, tw, (xs[c], ys[r], xs[c + 1], ys[r + 1]))
            for r in range(rows)
            for c in range(cols)
        ]
        if getattr(self._image_processor, "use_thumbnail", True):
            parts.append(GridPart(rows * cols * th * tw, gh, gw, (0, 0, W, H)))
        return TokenLayout((H, W), tuple(parts))


__all__ = ["Lfm2VlAdapter"]
