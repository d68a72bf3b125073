"""LLaVA-NeXT (``anyres``): a squashed base image plus a tiled, unpadded high-resolution grid.

What the processor and the model do with an ``h x w`` input (transformers'
``LlavaNextImageProcessor`` and ``LlavaNextModel.pack_image_features``):

1. pick the best pinpoint ``(Hb, Wb)`` (``select_best_resolution``), resize the
   input keeping its aspect ratio to fit it (``get_patch_output_size``, one side
   touches the pinpoint), centre it on a black ``Hb x Wb`` page and cut
   ``S x S`` tiles (``S`` = the vision tower's input side);
2. also squash the whole input to ``S x S``: the *base* image;
3. the vision tower turns every tile and the base into ``p x p`` patch features
   (``p = S / patch``, CLS dropped); the tile features are stitched into one
   ``(Hb / S * p) x (Wb / S * p)`` grid of cells, the rows or columns that show
   only the black padding are cut off (``unpad_image``) and an ``image_newline``
   token is appended to every remaining row;
4. the image's tokens are: ``p x p`` base tokens (row-major), then the kept grid
   row by row, each row followed by its newline token. All of them, newlines
   included, are ``<image>`` placeholders in ``input_ids``.

**Canvas.** The attribution pass encodes the original image, exactly as the base
answer does. The canvas is *the region of the padded best-resolution page that
the kept (unpadded) grid covers*, rendered from the processor's own tile pixels:
the high-resolution rendering the model sees, cropped to whole tile cells.

* every kept cell is exactly one ``patch x patch`` pixel box of the canvas, and
  the kept grid covers the whole canvas (no partial cells);
* fed back to the processor, the canvas is not resized again (one side already
  touches the pinpoint), is padded back to the same place, and the model keeps
  exactly the same rows and columns: the same token grids on the same pixels, so
  the highlighted canvas is tiled identically (tested over many sizes);
* the base grid shows the whole original squashed: on the canvas it covers the
  region where the resized original lies on the page, which may reach up to one
  cell past the canvas's edges (the canvas may keep a sliver of black padding or
  lose a sliver of image, because unpadding works in whole cells).

``Frame.box`` records exactly which region of the original the canvas shows (it
may reach slightly outside the original; remapped masks are filled there).

**Merging base and tiles.** :func:`~vea_engine.attribution.paint_scores`
averages overlapping grids pixel by pixel: ``(base cell + tile cell) / 2`` where
both cover a pixel.
Denoising runs on each grid separately.

**Newline tokens** are excluded from the image tokens. ``input_ids`` alone do not
say where the rows end (several grid shapes can give the same number of
``<image>`` placeholders), so :meth:`LlavaNextAdapter.image_token_positions`
takes the grid shape from the images' token layouts (the engine passes them).
Without them it falls back to the only canvas grid shape that gives that count,
and refuses ambiguous counts with a clear error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..geometry import Canvas, Frame, GridPart, TokenLayout
from .base import FamilyAdapter
from .common import processor_pixels_to_uint8, stitch_tiles


@dataclass(frozen=True)
class AnyresLayout:
    """Where the high-resolution token grid of one ``h x w`` processor input lies.

    Attributes:
        input_hw: ``(h, w)`` of the image given to the processor.
        best_hw: the chosen pinpoint ``(Hb, Wb)``.
        tiles_hw: tiles per column and per row, ``(Hb / S, Wb / S)``.
        resized_hw: the aspect-kept resize of the input that fits the pinpoint.
        paste_yx: top-left corner of the resized input on the padded ``Hb x Wb`` page.
        cell: page pixels per grid cell, ``S / p``: the patch size when a tile is a whole
            number of patches (LLaVA-NeXT's 336 / 24 = 14); otherwise the patches do not
            quite reach the tile's edge (OneVision's 384 px = 27 patches of 14 px + 6 px) and
            the cells are spread evenly over the tile (at most ``S - p * patch`` px off).
        kept: ``(r0, r1, c0, c1)`` cell rows / columns the model keeps after unpadding
            (empty for inputs so thin that no cell survives: the model then keeps only
            the base grid and, for a tall input, one newline token per row; as the
            processor counts).
        tokens_hw: the kept grid as tokens ``(rows, cols)`` (smaller when the model
            downsamples it, LLaVA-OneVision; one side 0 when nothing is kept); newline
            tokens not counted.
    """

    input_hw: tuple[int, int]
    best_hw: tuple[int, int]
    tiles_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    paste_yx: tuple[int, int]
    cell: float
    kept: tuple[int, int, int, int]
    tokens_hw: tuple[int, int]

    @property
    def kept_page_box(self) -> tuple[int, int, int, int]:
        """The kept cells as a pixel box ``(x0, y0, x1, y1)`` of the padded page (rounded to whole pixels)."""
        r0, r1, c0, c1 = self.kept
        return tuple(int(round(v * self.cell)) for v in (c0, r0, c1, r1))

    @property
    def paste_page_box(self) -> tuple[int, int, int, int]:
        """Where the resized input lies on the padded page, ``(x0, y0, x1, y1)``."""
        (py, px), (nh, nw) = self.paste_yx, self.resized_hw
        return (px, py, px + nw, py + nh)

    @property
    def canvas_page_box(self) -> tuple[int, int, int, int]:
        """The canvas on the page: the kept cells, or the resized input when no cell is kept (very thin inputs)."""
        return self.kept_page_box if min(self.tokens_hw) > 0 else self.paste_page_box

    def page_to_input(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Map a page pixel box to the processor input's pixels (undo the paste and the resize)."""
        (h, w), (nh, nw), (py, px) = self.input_hw, self.resized_hw, self.paste_yx
        x0, y0, x1, y1 = box
        return ((x0 - px) * w / nw, (y0 - py) * h / nh, (x1 - px) * w / nw, (y1 - py) * h / nh)


class LlavaNextAdapter(FamilyAdapter):
    """LLaVA-NeXT (see module docstring for the canvas and the token layout)."""

    family = "llava_next"
    model_types = ("llava_next",)
    fallback_template = "[INST] {image}\n{prompt} [/INST]"

    # -- configuration --------------------------------------------------------
    @property
    def tile(self) -> int:
        """Side ``S`` of a tile and of the base image (the vision tower's input)."""
        return int(self.config.vision_config.image_size)

    @property
    def input_side(self) -> int:
        """A tile's side ``S``."""
        return self.tile

    @property
    def patch(self) -> int:
        return int(self.config.vision_config.patch_size)

    @property
    def base_side(self) -> int:
        """Tokens per side of the base grid (``p``)."""
        return self.tile // self.patch

    @property
    def pinpoints(self) -> list[tuple[int, int]]:
        """The model's ``(height, width)`` pinpoints; ValueError if the processor uses others."""
        model = [tuple(int(v) for v in p) for p in self.config.image_grid_pinpoints]
        processor = getattr(self.processor.image_processor, "image_grid_pinpoints", None)
        if processor is not None and [tuple(int(v) for v in p) for p in processor] != model:
            raise ValueError(
                f"{self.family}: the image processor's image_grid_pinpoints {processor} differ from the model "
                f"config's {model}; fix processor_config.json / preprocessor_config.json of the checkpoint."
            )
        return model

    def _check_strategy(self) -> None:
        strategy = getattr(self.config, "vision_feature_select_strategy", "default")
        expected = self._expected_strategy()
        if strategy != expected:
            raise ValueError(
                f"{self.family}: vision_feature_select_strategy={strategy!r} is not supported (expected {expected!r})."
            )

    def _expected_strategy(self) -> str:
        return "default"

    # -- layout ---------------------------------------------------------------
    def _downsample(self, rows: int, cols: int) -> tuple[int, int]:
        """Token grid of a kept ``rows x cols`` cell grid (identity; OneVision shrinks large ones)."""
        return rows, cols

    def layout(self, input_hw: tuple[int, int]) -> AnyresLayout:
        """The high-resolution grid of an ``(h, w)`` processor input, exactly as the model packs it."""
        from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
        from transformers.image_utils import ChannelDimension
        from transformers.models.llava_next.modeling_llava_next import unpad_image

        h, w = (int(v) for v in input_hw)
        best_h, best_w = (int(v) for v in select_best_resolution((h, w), self.pinpoints))
        shape_only = np.empty((1, h, w), dtype=np.uint8)  # get_patch_output_size reads the size only
        nh, nw = get_patch_output_size(shape_only, (best_h, best_w), ChannelDimension.FIRST)
        py, px = (best_h - nh) // 2, (best_w - nw) // 2  # LlavaNextImageProcessor._get_padding_size
        rows, cols = best_h // self.tile * self.base_side, best_w // self.tile * self.base_side
        cells = torch.arange(rows * cols).view(1, rows, cols)
        kept = unpad_image(cells, (h, w))[0]  # [r, c] the model's own unpadding of the stitched grid
        if kept.numel() == 0:  # too thin: no cell survives unpadding (one side has none)
            r0 = r1 = c0 = c1 = 0
            tokens_hw = tuple(kept.shape)  # e.g. (12, 0): no image tokens, but a newline for each of 12 rows
        else:
            r0, c0 = divmod(int(kept[0, 0]), cols)
            r1, c1 = r0 + kept.shape[0], c0 + kept.shape[1]
            tokens_hw = self._downsample(r1 - r0, c1 - c0)
        return AnyresLayout(
            input_hw=(h, w),
            best_hw=(best_h, best_w),
            tiles_hw=(best_h // self.tile, best_w // self.tile),
            resized_hw=(int(nh), int(nw)),
            paste_yx=(py, px),
            cell=self.tile / self.base_side,
            kept=(r0, r1, c0, c1),
            tokens_hw=tokens_hw,
        )

    @functools.cached_property
    def _grids_by_count(self) -> dict[int, set[tuple[int, int]]]:
        """``number of <image> placeholders -> {(rows, cols)}`` of the token grids of all possible canvases.

        A canvas is a whole number of cells that the processor keeps entirely (see
        :meth:`render`); every pinpoint and every unpadding is enumerated.
        """
        out: dict[int, set[tuple[int, int]]] = {}
        cell = self.tile / self.base_side
        for best_h, best_w in self.pinpoints:
            rows, cols = best_h // self.tile * self.base_side, best_w // self.tile * self.base_side
            kept = {(pad, rows - pad, 0, cols) for pad in range((rows + 1) // 2)}
            kept |= {(0, rows, pad, cols - pad) for pad in range((cols + 1) // 2)}
            for r0, r1, c0, c1 in kept:
                canvas_hw = (round(r1 * cell) - round(r0 * cell), round(c1 * cell) - round(c0 * cell))
                layout = self.layout(canvas_hw)
                if layout.page_to_input(layout.kept_page_box) != (0, 0, canvas_hw[1], canvas_hw[0]):
                    continue  # not a canvas: the processor would not keep all of it
                r, c = layout.tokens_hw
                out.setdefault(self._n_placeholders(r, c), set()).add((r, c))
        return out

    def _n_placeholders(self, rows: int, cols: int) -> int:
        """``<image>`` placeholders of one image: base grid + tiled grid + one newline per row."""
        return self.base_side**2 + rows * (cols + 1)

    def tiled_grid_for_count(self, n_placeholders: int) -> tuple[int, int]:
        """Shape ``(rows, cols)`` of the tiled token grid of an image with ``n_placeholders`` ``<image>`` tokens,
        when only one canvas shape of this processor gives that count."""
        n = int(n_placeholders)
        if n == self.base_side**2:
            return 0, 0  # the base grid only: an input too wide to keep a tile cell
        shapes = self._grids_by_count.get(n, set())
        if len(shapes) != 1:
            why = "no canvas of this processor gives" if not shapes else f"grid shapes {sorted(shapes)} all give"
            raise ValueError(
                f"{self.family}: {why} {n} image placeholders, so the newline tokens cannot be located; "
                "pass the images' token layouts (adapter.token_layout(), as extract_attention does), and check that "
                "the processor and model configs match."
            )
        return next(iter(shapes))

    def image_token_positions(
        self, input_ids: torch.Tensor, layouts: Sequence[TokenLayout] | None = None
    ) -> list[torch.Tensor]:
        """Image tokens without the newline tokens: ``[B, N] -> B x [n_b]`` (base first, then the grid).

        The tiled grid shape comes from ``layouts[b]`` when given, else from the
        placeholder count (an error when several grid shapes give that count).
        """
        out = []
        for b, row in enumerate(input_ids == self.image_token_id):  # [N]
            positions = row.nonzero(as_tuple=True)[0]
            if positions.numel():
                if layouts is not None:
                    rows, cols = layouts[b].parts[1].rows, layouts[b].parts[1].cols
                else:
                    rows, cols = self.tiled_grid_for_count(positions.numel())
                newline = self.base_side**2 + torch.arange(rows, device=positions.device) * (cols + 1) + cols
                keep = torch.ones_like(positions, dtype=torch.bool)
                keep[newline] = False
                positions = positions[keep]
            out.append(positions)
        return out

    # -- canvas and token layout -------------------------------------------------
    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        ip = self.processor.image_processor
        h0, w0 = image.shape[:2]
        layout = self.layout((h0, w0))
        pixels = ip(images=[Image.fromarray(image)], return_tensors="pt")["pixel_values"][
            0
        ]  # [1 + tiles (+pad), 3, S, S]
        th, tw = layout.tiles_hw
        page = stitch_tiles(pixels[1 : 1 + th * tw], th, tw)  # [3, Hb, Wb] the padded page
        x0, y0, x1, y1 = layout.canvas_page_box
        canvas = processor_pixels_to_uint8(page[:, y0:y1, x0:x1], ip, rounding)  # [H, W, 3]
        return Canvas(canvas, Frame((h0, w0), canvas.shape[:2], layout.page_to_input(layout.canvas_page_box)))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        self._check_strategy()
        h, w = (int(v) for v in inputs["image_sizes"][index])  # the processor input = the original
        layout = self.layout((h, w))
        kx0, ky0, kx1, ky1 = layout.canvas_page_box
        px0, py0, px1, py1 = layout.paste_page_box
        rows, cols = layout.tokens_hw
        side = self.base_side
        parts = (
            GridPart(0, side, side, (px0 - kx0, py0 - ky0, px1 - kx0, py1 - ky0)),  # base: the input squashed
            GridPart(side * side, rows, cols, (0, 0, kx1 - kx0, ky1 - ky0)),  # kept tile cells: the canvas (maybe none)
        )
        return TokenLayout((ky1 - ky0, kx1 - kx0), parts)


def tiled_grid_ambiguities(adapter: LlavaNextAdapter) -> dict[int, set[tuple[int, int]]]:
    """Placeholder counts that more than one tiled grid shape of ``adapter``'s config produces."""
    return {n: shapes for n, shapes in adapter._grids_by_count.items() if len(shapes) > 1}


__all__ = ["AnyresLayout", "LlavaNextAdapter", "tiled_grid_ambiguities"]
