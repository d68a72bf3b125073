"""Where each image token sits: token grid(s), model-input canvas, original image.

Three objects, each with one job:

* :class:`Frame` -- where a *canvas* (the model-input rendering of an image, on
  which evidence maps are painted and highlighting is applied) lies in its
  *original* image: the original's size, the canvas's size and the canvas's box
  in original pixels. Masks move between canvases and originals on frames
  (:func:`remap_mask`), e.g. from a delegate model's canvas to another model's.
* :class:`Canvas` -- the rendering itself (``[H, W, 3]`` uint8) with its frame.
* :class:`TokenLayout` -- the token grid(s) the model lays on a canvas (one for
  LLaVA-1.5 and Qwen-VL; base + tiles for tiled families), each covering a box of
  the canvas, in token order. Family adapters produce it from processor outputs.

:class:`ImageGeometry` pairs a token layout with its frame: it is what an
:class:`~vea_engine.attribution.AttentionMap` carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import MASK_DTYPE

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels (x1/y1 exclusive)


def _hw(value) -> tuple[int, int]:
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class Frame:
    """Where a canvas lies in its original image.

    Attributes:
        original_hw: ``(H0, W0)`` of the original image.
        canvas_hw: ``(H, W)`` of the canvas.
        box: the region of the original the canvas shows, ``(x0, y0, x1, y1)`` in
            original pixels (may reach outside the original, e.g. padding).
    """

    original_hw: tuple[int, int]
    canvas_hw: tuple[int, int]
    box: Box

    def __post_init__(self) -> None:
        object.__setattr__(self, "original_hw", _hw(self.original_hw))
        object.__setattr__(self, "canvas_hw", _hw(self.canvas_hw))
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        x0, y0, x1, y1 = self.box
        if min(*self.original_hw, *self.canvas_hw) < 1 or not (x1 > x0 and y1 > y0):
            raise ValueError(f"invalid frame: {self}")

    @classmethod
    def whole(cls, original_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> Frame:
        """A canvas showing the whole original (a plain resize)."""
        return cls(original_hw, canvas_hw, (0.0, 0.0, float(original_hw[1]), float(original_hw[0])))

    def original_boxes_to_canvas(self, boxes: torch.Tensor) -> torch.Tensor:
        """Map ``[N, 4]`` xyxy boxes from original-image pixels to canvas pixels (unclipped, float64)."""
        ox0, oy0, ox1, oy1 = self.box
        H, W = self.canvas_hw
        sx, sy = W / (ox1 - ox0), H / (oy1 - oy0)
        boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        return torch.stack(
            [(boxes[:, 0] - ox0) * sx, (boxes[:, 1] - oy0) * sy, (boxes[:, 2] - ox0) * sx, (boxes[:, 3] - oy0) * sy], 1
        )


@dataclass(frozen=True)
class Canvas:
    """A model-input rendering of one image with its frame.

    Attributes:
        pixels: ``[H, W, 3]`` uint8 RGB, ``H, W == frame.canvas_hw``.
        frame: where it lies in the original.
    """

    pixels: np.ndarray
    frame: Frame

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(f"canvas pixels must be [H, W, 3] uint8, got {self.pixels.shape} {self.pixels.dtype}")
        if tuple(self.pixels.shape[:2]) != self.frame.canvas_hw:
            raise ValueError(f"canvas is {self.pixels.shape[:2]} but its frame says {self.frame.canvas_hw} (H, W)")


@dataclass(frozen=True)
class GridPart:
    """One row-major token grid covering ``box`` (integer canvas pixels; it may reach past the canvas edges)."""

    token_start: int  # offset of its first token among this image's tokens
    rows: int
    cols: int
    box: tuple[int, int, int, int]

    @property
    def n_tokens(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class TokenLayout:
    """The token grids a model lays on one canvas, in token order.

    Attributes:
        canvas_hw: ``(H, W)`` of the canvas the grids' boxes refer to.
        parts: the grids, contiguous in token order.
    """

    canvas_hw: tuple[int, int]
    parts: tuple[GridPart, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "canvas_hw", _hw(self.canvas_hw))
        object.__setattr__(self, "parts", tuple(self.parts))
        expected = 0
        for part in self.parts:
            if part.token_start != expected:
                raise ValueError(f"grid parts must be contiguous in token order; got {self.parts}")
            expected += part.n_tokens

    @classmethod
    def single_grid(cls, rows: int, cols: int, canvas_hw: tuple[int, int]) -> TokenLayout:
        """One grid covering the whole canvas (LLaVA-1.5, Qwen-VL, Gemma 3, PaliGemma)."""
        H, W = _hw(canvas_hw)
        return cls((H, W), (GridPart(0, int(rows), int(cols), (0, 0, W, H)),))

    @property
    def n_tokens(self) -> int:
        return sum(part.n_tokens for part in self.parts)

    def split(self, scores: torch.Tensor) -> list[torch.Tensor]:
        """Token scores ``[B, n_tokens]`` -> one ``[B, rows, cols]`` grid per part."""
        if scores.ndim != 2 or scores.shape[1] != self.n_tokens:
            raise ValueError(f"expected token scores [B, {self.n_tokens}], got {tuple(scores.shape)}")
        B = scores.shape[0]
        return [scores[:, p.token_start : p.token_start + p.n_tokens].reshape(B, p.rows, p.cols) for p in self.parts]

    def cell_boxes(self) -> torch.Tensor:
        """Canvas pixel box of every token, ``[n_tokens, 4]`` float64 (x0, y0, x1, y1), token order."""
        boxes = []
        for p in self.parts:
            x0, y0, x1, y1 = p.box
            r = torch.arange(p.rows, dtype=torch.float64)
            c = torch.arange(p.cols, dtype=torch.float64)
            ch, cw = (y1 - y0) / p.rows, (x1 - x0) / p.cols
            yy, xx = torch.meshgrid(r, c, indexing="ij")
            boxes.append(
                torch.stack([x0 + xx * cw, y0 + yy * ch, x0 + (xx + 1) * cw, y0 + (yy + 1) * ch], -1).reshape(-1, 4)
            )
        return torch.cat(boxes)


@dataclass(frozen=True, init=False)
class ImageGeometry:
    """A token layout on a framed canvas: how one model saw one image (see module docstring).

    Built from ``(layout, frame)``, or from the flat fields
    ``(canvas_hw, parts, original_hw, canvas_in_original)``.
    """

    layout: TokenLayout
    frame: Frame

    def __init__(
        self,
        layout: TokenLayout | None = None,
        frame: Frame | None = None,
        *,
        canvas_hw: tuple[int, int] | None = None,
        parts: tuple[GridPart, ...] = (),
        original_hw: tuple[int, int] | None = None,
        canvas_in_original: Box | None = None,
    ) -> None:
        if layout is None:
            layout = TokenLayout(canvas_hw, parts)
        if frame is None:
            frame = Frame(original_hw, layout.canvas_hw, canvas_in_original)
        if layout.canvas_hw != frame.canvas_hw:
            raise ValueError(f"token layout is on a {layout.canvas_hw} canvas but the frame's is {frame.canvas_hw}")
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "frame", frame)

    @classmethod
    def single_grid(
        cls, rows: int, cols: int, canvas_hw: tuple[int, int], original_hw: tuple[int, int], canvas_in_original: Box
    ) -> ImageGeometry:
        """A single grid covering the whole canvas."""
        return cls(TokenLayout.single_grid(rows, cols, canvas_hw), Frame(original_hw, canvas_hw, canvas_in_original))

    canvas_hw = property(lambda self: self.layout.canvas_hw, doc="``(H, W)`` of the canvas.")
    parts = property(lambda self: self.layout.parts, doc="The token grids, in token order.")
    n_tokens = property(lambda self: self.layout.n_tokens, doc="Image tokens of this image.")
    original_hw = property(lambda self: self.frame.original_hw, doc="``(H0, W0)`` of the original.")
    canvas_in_original = property(lambda self: self.frame.box, doc="The original's region the canvas shows.")

    def split(self, scores: torch.Tensor) -> list[torch.Tensor]:
        """See :meth:`TokenLayout.split`."""
        return self.layout.split(scores)

    def cell_boxes(self) -> torch.Tensor:
        """See :meth:`TokenLayout.cell_boxes`."""
        return self.layout.cell_boxes()

    def original_boxes_to_canvas(self, boxes: torch.Tensor) -> torch.Tensor:
        """See :meth:`Frame.original_boxes_to_canvas`."""
        return self.frame.original_boxes_to_canvas(boxes)


def _frame(where: Frame | ImageGeometry) -> Frame:
    return where.frame if isinstance(where, ImageGeometry) else where


def _sample(mask: torch.Tensor, src_region: Box, dst_hw: tuple[int, int], dst_region: Box, fill: float) -> torch.Tensor:
    """Resample ``[B, h, w]`` whose pixels span ``src_region`` onto ``dst_hw`` pixels spanning ``dst_region``.

    Both regions are boxes in one shared coordinate frame (the original image).
    Bilinear, pixel centres aligned (``align_corners=False``); ``fill`` outside.
    """
    B = mask.shape[0]
    H, W = dst_hw
    sx0, sy0, sx1, sy1 = src_region
    dx0, dy0, dx1, dy1 = dst_region
    dev = mask.device
    xs = dx0 + (torch.arange(W, device=dev, dtype=torch.float64) + 0.5) * (dx1 - dx0) / W  # frame coords
    ys = dy0 + (torch.arange(H, device=dev, dtype=torch.float64) + 0.5) * (dy1 - dy0) / H
    gx = (2 * (xs - sx0) / (sx1 - sx0) - 1).to(MASK_DTYPE)  # [-1, 1] over the source pixels' extent
    gy = (2 * (ys - sy0) / (sy1 - sy0) - 1).to(MASK_DTYPE)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None].expand(B, H, W, 2)
    out = F.grid_sample(
        mask.to(MASK_DTYPE)[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]  # [B, H, W]
    seen = ((ys >= sy0) & (ys < sy1))[:, None] & ((xs >= sx0) & (xs < sx1))[None, :]  # [H, W] inside the source
    return torch.where(seen, out, torch.full_like(out, fill))


def mask_to_original(mask: torch.Tensor, frame: Frame | ImageGeometry, fill: float = 0.0) -> torch.Tensor:
    """Carry a canvas mask ``[B, H, W]`` onto the original image ``[B, H0, W0]``.

    Parts of the original the model never saw (e.g. cropped away) get ``fill``.
    """
    frame = _frame(frame)
    H0, W0 = frame.original_hw
    return _sample(mask, frame.box, frame.original_hw, (0, 0, W0, H0), fill)


def mask_from_original(mask: torch.Tensor, frame: Frame | ImageGeometry, fill: float = 0.0) -> torch.Tensor:
    """Carry a mask on the original image ``[B, H0, W0]`` onto ``frame``'s canvas ``[B, H, W]``."""
    frame = _frame(frame)
    H0, W0 = frame.original_hw
    return _sample(mask, (0, 0, W0, H0), frame.canvas_hw, frame.box, fill)


def remap_mask(
    mask: torch.Tensor, source: Frame | ImageGeometry, target: Frame | ImageGeometry | None, fill: float = 0.0
) -> torch.Tensor:
    """Carry a mask from ``source``'s canvas to ``target``'s canvas (or the original image if ``target`` is None).

    Both frames must describe the same original image size: this is how a mask
    made by one model (a delegate) is applied to the image another model sees.

    Args:
        mask: ``[B, H, W]`` on the source canvas.
        source, target: frames (or geometries, whose frames are used).
        fill: value where the source canvas does not cover the target.

    Returns:
        ``[B, H', W']`` float32 on the target canvas (or the original).
    """
    source = _frame(source)
    if mask.shape[1:] != torch.Size(source.canvas_hw):
        raise ValueError(f"mask is {tuple(mask.shape[1:])} but the source canvas is {source.canvas_hw} (H, W).")
    if target is None:
        return mask_to_original(mask, source, fill)
    target = _frame(target)
    if target.original_hw != source.original_hw:
        raise ValueError(
            f"cannot remap a mask between different originals: {source.original_hw} vs {target.original_hw} (H, W)."
        )
    return _sample(mask, source.box, target.canvas_hw, target.box, fill)
