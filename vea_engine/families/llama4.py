"""Llama 4 (Scout, Maverick): tiles of the undistorted image plus a global view.

What transformers' ``Llama4ImageProcessor`` does with an ``h x w`` input (tile side
``S = size["height"]``, at most ``max_patches`` tiles):

1. among the pages of ``rows x cols`` tiles (``rows * cols <= max_patches``) pick the
   one reached with the smallest upscale (or, when none fits, the smallest downscale;
   ties: the smaller page), ``get_best_fit``;
2. resize the input without distortion to fit that page, but never past its own size
   unless it is smaller than one tile (``resize_to_max_canvas=False``); paste it at the
   *top left* of the ``rows * S x cols * S`` page, black padding right and bottom, and
   cut the page into row-major tiles;
3. when there is more than one tile, add the whole input squashed to ``S x S``: the
   *global view*.

The vision tower cuts every tile into ``S / patch`` patches per side and pixel-shuffles
``2 x 2`` patches into one token, row-major: ``n = S / patch / 2`` tokens per side
(Scout: 336 / 14 / 2 = 12, cells of 28 px). In the prompt each image is::

    <|image_start|> [tile]<|tile_x_separator|>[tile]...<|tile_y_separator|> (per row) <|image|>[global]<|image_end|>

where each ``[...]`` is ``n * n`` ``<|patch|>`` tokens (a single-tile image is only
``<|image|>`` and its tile). Only ``<|patch|>`` (the config's ``image_token_index``) is
an image feature, so the separators, ``<|image|>`` and the start / end tokens are never
image tokens; the image tokens are the tiles in order, then the global view.

**Canvas**: the resized input as the tiles show it, ``nh x nw`` (the page without its
padding), rendered from the processor's own tile pixels. It shows the whole original
(:meth:`~vea_engine.geometry.Frame.whole`). Fed back to the processor it is not resized
again and lands on the same page, so it is tiled identically and its global view is
again the whole canvas (one exception: when two pages' scales nearly tie and the resize
lands exactly on the smaller page, the processor's page keeps a whole tile row or column of
padding, which the canvas fed back does not get; the other tiles are the same). Tile grids
cover their ``S x S`` boxes of the page; cells of
the last tile row or column may lie partly or wholly on the padding, past the canvas's
edges (their scores fall outside the canvas). The global grid covers the whole canvas.
Overlapping grids are averaged by :func:`~vea_engine.attribution.paint_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..geometry import Canvas, Frame, GridPart, TokenLayout
from .base import FamilyAdapter
from .common import encode_chat, processor_pixels_to_uint8, size_value, stitch_tiles


@dataclass(frozen=True)
class TileLayout:
    """Where one ``h x w`` processor input lies on its tile page.

    Attributes:
        input_hw: ``(h, w)`` of the image given to the processor.
        tiles_hw: tiles per column and per row, ``(rows, cols)``.
        resized_hw: the undistorted resize of the input pasted at the page's top left: the canvas.
    """

    input_hw: tuple[int, int]
    tiles_hw: tuple[int, int]
    resized_hw: tuple[int, int]

    @property
    def n_tiles(self) -> int:
        return self.tiles_hw[0] * self.tiles_hw[1]

    @property
    def has_global_view(self) -> bool:
        """Whether the processor adds the squashed whole input (only with more than one tile)."""
        return self.n_tiles > 1


class Llama4Adapter(FamilyAdapter):
    """Llama 4 (see module docstring for the canvas and the token layout)."""

    family = "llama4"
    model_types = ("llama4",)
    fallback_template = (
        "<|begin_of_text|><|header_start|>user<|header_end|>\n\n{image}{prompt}<|eot|>"
        "<|header_start|>assistant<|header_end|>\n\n"
    )
    multi_image = True

    # -- configuration --------------------------------------------------------
    @property
    def tile(self) -> int:
        """Side ``S`` of a tile and of the global view; ValueError when processor and model disagree."""
        ip = self.processor.image_processor
        height, width = size_value(ip.size, "height"), size_value(ip.size, "width")
        model = int(self.config.vision_config.image_size)
        if height != width or height != model:
            raise ValueError(
                f"{self.family}: the image processor's size {height}x{width} is not the vision tower's square "
                f"image_size {model}; fix size in the checkpoint's preprocessor_config.json."
            )
        return model

    @property
    def input_side(self) -> int:
        """A tile's side ``S``."""
        return self.tile

    @property
    def tokens_per_side(self) -> int:
        """Tokens per side of one tile's grid: ``S / patch * pixel_shuffle_ratio``."""
        vision = self.config.vision_config
        patches = self.tile // int(vision.patch_size)
        ratio = float(vision.pixel_shuffle_ratio)
        side = patches * ratio
        if side != int(side) or patches * int(vision.patch_size) != self.tile:
            raise ValueError(
                f"{self.family}: a {self.tile}-px tile is not a whole number of {vision.patch_size}-px patches "
                f"shuffled by {ratio}; check vision_config in the checkpoint's config.json."
            )
        return int(side)

    # -- layout ---------------------------------------------------------------
    def layout(self, input_hw: tuple[int, int]) -> TileLayout:
        """The tile page of an ``(h, w)`` processor input, with the processor's own arithmetic."""
        import torch
        from transformers.image_utils import SizeDict
        from transformers.models.llama4.image_processing_llama4 import (
            find_supported_resolutions,
            get_best_fit,
            get_max_res_without_distortion,
        )

        ip = self.processor.image_processor
        S = self.tile
        h, w = (int(v) for v in input_hw)
        to_max = bool(getattr(ip, "resize_to_max_canvas", False))
        pages = torch.tensor(find_supported_resolutions(int(ip.max_patches), SizeDict(height=S, width=S)))  # [P, 2]
        page_h, page_w = (int(v) for v in get_best_fit((h, w), pages, resize_to_max_canvas=to_max))
        fit_h, fit_w = page_h, page_w
        if not to_max:  # never upscale past the input's own size, unless it is smaller than a tile
            fit_h, fit_w = min(max(h, S), page_h), min(max(w, S), page_w)
        nh, nw = get_max_res_without_distortion((h, w), (fit_h, fit_w))
        rows, cols = page_h // S, page_w // S
        return TileLayout(input_hw=(h, w), tiles_hw=(rows, cols), resized_hw=(max(int(nh), 1), max(int(nw), 1)))

    # -- prompting ----------------------------------------------------------
    def encode(self, images: list[Image.Image], prompts: list[str]) -> Any:
        # the chat template writes the BOS token itself
        plain = self.plain_user_text(prompts)  # prompts stay plain text
        texts = [self.chat_text(p) for p in plain.prompts]
        return plain.restore(encode_chat(self.processor, texts, images))

    # -- canvas and token layout -------------------------------------------------
    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        ip = self.processor.image_processor
        layout = self.layout(image.shape[:2])
        pixels = ip(images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"]  # [tiles (+1), 3, S, S]
        rows, cols = layout.tiles_hw
        expected = layout.n_tiles + layout.has_global_view
        if pixels.shape[0] != expected:
            raise RuntimeError(
                f"{self.family}: the image processor made {pixels.shape[0]} tiles of a {image.shape[1]}x"
                f"{image.shape[0]} image, its layout predicts {expected}; this processor configuration is not supported."
            )
        page = stitch_tiles(pixels[: layout.n_tiles], rows, cols)  # [3, rows * S, cols * S] the padded page
        nh, nw = layout.resized_hw
        canvas = processor_pixels_to_uint8(page[:, :nh, :nw], ip, rounding)  # [nh, nw, 3]
        return Canvas(canvas, Frame.whole(image.shape[:2], canvas.shape[:2]))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        layout = self.layout(frame.original_hw)  # the processor input is the original
        if layout.resized_hw != frame.canvas_hw:
            raise ValueError(
                f"{self.family}: the canvas is {frame.canvas_hw} (H, W) but the processor resizes a "
                f"{frame.original_hw} image to {layout.resized_hw}; render the canvas with this adapter."
            )
        S, n = self.tile, self.tokens_per_side
        rows, cols = layout.tiles_hw
        H, W = layout.resized_hw
        parts = [
            GridPart((r * cols + c) * n * n, n, n, (c * S, r * S, (c + 1) * S, (r + 1) * S))
            for r in range(rows)
            for c in range(cols)
        ]
        if layout.has_global_view:  # the whole input squashed to one tile: the whole canvas
            parts.append(GridPart(layout.n_tiles * n * n, n, n, (0, 0, W, H)))
        return TokenLayout((H, W), tuple(parts))


__all__ = ["Llama4Adapter", "TileLayout"]
