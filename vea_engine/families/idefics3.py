"""Idefics3 and SmolVLM: image splitting into square tiles plus a global image, pixel shuffle.

The image processor resizes the image so that its longest side is
``size["longest_edge"]`` (``L``, e.g. 4 x 364), rounds both sides *up* to multiples
of the tile side ``S = max_image_size["longest_edge"]`` (aspect ratio kept only up
to that rounding), cuts the result into ``rows x cols`` tiles of ``S x S`` and adds
the whole resized image squashed to ``S x S`` (the *global* image). Each tile goes
through the vision tower (``S / patch`` patches per side) and the connector's
pixel shuffle merges ``scale x scale`` patches into one token, row-major, so every
tile -- and the global image -- is a ``(S / patch / scale)``-square token grid.

The prompt spells the layout out with text tokens that are not image tokens::

    <fake_token_around_image><row_1_col_1><image>*n <fake_token_around_image><row_1_col_2><image>*n \\n ...
    \\n<fake_token_around_image><global-img><image>*n<fake_token_around_image>

**Canvas**: the tiled image, ``rows * S x cols * S``, showing the whole original.
Its parts are the tiles in prompt order, each covering its own ``S x S`` box, then
the global grid covering the whole canvas. When ``S`` is not a whole number of
patches (SmolVLM: 384-px tiles, 14-px patches, 27 patches = 378 px) the vision
tower never sees the last pixels of each tile; the grids cover exactly the pixels
the patches see (``seen_side``), so token cells lie where the patches are. Fed back to the processor the canvas is
not resized (its longest side already is ``L``, both sides are multiples of ``S``),
so it is tiled identically. The ``<row_i_col_j>`` tokens of the prompt give
``rows`` and ``cols``; an image small enough not to be split (``rows = cols = 0``)
is only the global image, and then the canvas is that ``S x S`` image.

Overlapping grids (each tile and the global image) are averaged where they
overlap by :func:`~vea_engine.attribution.paint_scores`: every pixel gets
``(its tile cell + its global cell) / 2``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..geometry import Canvas, Frame, GridPart, TokenLayout
from .base import FamilyAdapter
from .common import processor_pixels_to_uint8, size_value, stitch_tiles

_ROW_COL = re.compile(r"<row_(\d+)_col_(\d+)>")


class Idefics3Adapter(FamilyAdapter):
    family = "idefics3"
    model_types = ("idefics3",)
    nested_images = True
    fallback_template = "<|begin_of_text|>User:{image}{prompt}<end_of_utterance>\nAssistant:"
    multi_image = True

    @property
    def input_side(self) -> int:
        """A tile's side ``S``."""
        return self.tile

    @property
    def tile(self) -> int:
        """Side ``S`` of a tile and of the global image."""
        side = size_value(getattr(self.processor.image_processor, "max_image_size", None), "longest_edge")
        return int(side or self.config.vision_config.image_size)

    @property
    def tokens_per_side(self) -> int:
        """Tokens per side of one tile's grid: ``S / patch / scale_factor``."""
        return self.tile // int(self.config.vision_config.patch_size) // int(self.config.scale_factor)

    @property
    def seen_side(self) -> int:
        """Pixels of a tile its patches cover: ``tokens_per_side * patch * scale_factor`` (378 of a 384-px tile
        with 14-px patches and scale 3, SmolVLM; all 364 of Idefics3's). Token cells are placed on those."""
        return self.tokens_per_side * int(self.config.vision_config.patch_size) * int(self.config.scale_factor)

    @functools.cached_property
    def _row_col_ids(self) -> dict[int, tuple[int, int]]:
        """Token id -> (row, col) of the tokenizer's ``<row_i_col_j>`` tokens."""
        vocab = self.processor.tokenizer.get_vocab()
        return {i: (int(m[1]), int(m[2])) for t, i in vocab.items() if (m := _ROW_COL.fullmatch(t))}

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        ip = self.processor.image_processor
        out = ip(images=[[Image.fromarray(image)]], return_tensors="pt", return_row_col_info=True)
        rows, cols = int(out["rows"][0][0]), int(out["cols"][0][0])
        pixels = out["pixel_values"][0]  # [rows * cols + 1, 3, S, S]: tiles row-major, then the global image
        # not split: the global image is all there is
        canvas = stitch_tiles(pixels[: rows * cols], rows, cols) if rows else pixels[0]
        canvas = processor_pixels_to_uint8(canvas, ip, rounding)
        return Canvas(canvas, Frame.whole(image.shape[:2], canvas.shape[:2]))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        ids = inputs["input_ids"][index]
        row_col = self._row_col_ids
        if not row_col:
            raise ValueError(f"{self.family}: the tokenizer has no <row_i_col_j> tokens; cannot locate the tiles.")
        lookup = torch.tensor(list(row_col), device=ids.device)
        present = [row_col[int(t)] for t in ids[torch.isin(ids, lookup)]]  # (row, col) of each tile, prompt order
        rows, cols = (max(rc[k] for rc in present) if present else 0 for k in (0, 1))
        if present != [(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)]:
            raise ValueError(f"{self.family}: the tiles of image {index} are not a full row-major grid: {present}.")
        S, n, seen = self.tile, self.tokens_per_side, self.seen_side
        parts = [
            GridPart((r * cols + c) * n * n, n, n, (c * S, r * S, c * S + seen, r * S + seen))
            for r in range(rows)
            for c in range(cols)
        ]
        H, W = (rows * S, cols * S) if rows else (S, S)
        # the global image is the whole canvas squashed to S x S; its patches see the first `seen` px of S
        parts.append(GridPart(rows * cols * n * n, n, n, (0, 0, W * seen // S, H * seen // S)))
        return TokenLayout((H, W), tuple(parts))


class SmolVLMAdapter(Idefics3Adapter):
    """SmolVLM: Idefics3's layout (see module docstring) with its own chat template."""

    family = "smolvlm"
    model_types = ("smolvlm",)
    fallback_template = "<|im_start|>User:{image}{prompt}<end_of_utterance>\nAssistant:"
