"""Where each image token sits: token grid(s), model-input canvas, original image.

A VLM turns an image into visual tokens laid on one or more grids (one for
LLaVA-1.5 and Qwen-VL; base + tiles for tiled families). :class:`ImageGeometry`
records, for one image as the model saw it:

* the *canvas*: the model-input rendering (``canvas_hw``), on which evidence
  maps are painted and highlighting is applied (pixel-aligned with the patches);
* the *parts*: token grids, each covering a box of the canvas, in token order;
* where the canvas lies in the *original* image (``canvas_in_original``), so a
  mask can be carried to the original image or to another model's canvas
  (delegate) with :func:`remap_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import MASK_DTYPE

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels (x1/y1 exclusive)


@dataclass(frozen=True)
class GridPart:
    """One row-major token grid covering ``box`` (integer pixels) of the canvas."""

    token_start: int  # offset of its first token among this image's tokens
    rows: int
    cols: int
    box: tuple[int, int, int, int]

    @property
    def n_tokens(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class ImageGeometry:
    """Token layout of one image (see module docstring)."""

    canvas_hw: tuple[int, int]
    parts: tuple[GridPart, ...]
    original_hw: tuple[int, int]
    canvas_in_original: Box  # the region of the original image the canvas shows

    def __post_init__(self) -> None:
        expected = 0
        for part in self.parts:
            if part.token_start != expected:
                raise ValueError(f"grid parts must be contiguous in token order; got {self.parts}")
            expected += part.n_tokens

    @property
    def n_tokens(self) -> int:
        return sum(part.n_tokens for part in self.parts)

    @classmethod
    def single_grid(
        cls, rows: int, cols: int, canvas_hw: tuple[int, int], original_hw: tuple[int, int], canvas_in_original: Box
    ) -> ImageGeometry:
        """A single grid covering the whole canvas (LLaVA-1.5, Qwen-VL)."""
        H, W = canvas_hw
        return cls(
            canvas_hw=(int(H), int(W)),
            parts=(GridPart(0, int(rows), int(cols), (0, 0, int(W), int(H))),),
            original_hw=(int(original_hw[0]), int(original_hw[1])),
            canvas_in_original=tuple(float(v) for v in canvas_in_original),
        )

    def split(self, scores: torch.Tensor) -> list[torch.Tensor]:
        """Token scores ``[B, n_tokens]`` -> one ``[B, rows, cols]`` grid per part."""
        if scores.ndim != 2 or scores.shape[1] != self.n_tokens:
            raise ValueError(f"expected token scores [B, {self.n_tokens}], got {tuple(scores.shape)}")
        return [
            scores[:, p.token_start : p.token_start + p.n_tokens].reshape(-1, p.rows, p.cols) for p in self.parts
        ]

    def cell_boxes(self) -> torch.Tensor:
        """Canvas pixel box of every token, ``[n_tokens, 4]`` float (x0, y0, x1, y1), token order."""
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

    def original_boxes_to_canvas(self, boxes: torch.Tensor) -> torch.Tensor:
        """Map ``[N, 4]`` xyxy boxes from original-image pixels to canvas pixels (unclipped)."""
        ox0, oy0, ox1, oy1 = self.canvas_in_original
        H, W = self.canvas_hw
        sx, sy = W / (ox1 - ox0), H / (oy1 - oy0)
        boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        return torch.stack(
            [(boxes[:, 0] - ox0) * sx, (boxes[:, 1] - oy0) * sy, (boxes[:, 2] - ox0) * sx, (boxes[:, 3] - oy0) * sy], 1
        )


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
    out = F.grid_sample(mask.to(MASK_DTYPE)[:, None], grid, mode="bilinear", padding_mode="border",
                        align_corners=False)[:, 0]  # [B, H, W]
    seen = ((ys >= sy0) & (ys < sy1))[:, None] & ((xs >= sx0) & (xs < sx1))[None, :]  # [H, W] inside the source
    return torch.where(seen, out, torch.full_like(out, fill))


def mask_to_original(mask: torch.Tensor, geometry: ImageGeometry, fill: float = 0.0) -> torch.Tensor:
    """Carry a canvas mask ``[B, H, W]`` onto the original image ``[B, H0, W0]``.

    Parts of the original the model never saw (e.g. cropped away) get ``fill``.
    """
    return _sample(mask, geometry.canvas_in_original, geometry.original_hw, (0, 0, *geometry.original_hw[::-1]), fill)


def mask_from_original(mask: torch.Tensor, geometry: ImageGeometry, fill: float = 0.0) -> torch.Tensor:
    """Carry a mask on the original image ``[B, H0, W0]`` onto ``geometry``'s canvas ``[B, H, W]``."""
    H0, W0 = geometry.original_hw
    return _sample(mask, (0, 0, W0, H0), geometry.canvas_hw, geometry.canvas_in_original, fill)


def remap_mask(mask: torch.Tensor, source: ImageGeometry, target: ImageGeometry | None, fill: float = 0.0) -> torch.Tensor:
    """Carry a mask from ``source``'s canvas to ``target``'s canvas (or the original image if ``target`` is None).

    Both geometries must describe the same original image size: this is how a
    mask made by one model (a delegate) is applied to the image another model sees.
    """
    if target is not None and tuple(target.original_hw) != tuple(source.original_hw):
        raise ValueError(
            f"cannot remap a mask between different originals: {source.original_hw} vs {target.original_hw} (H, W)."
        )
    if mask.shape[1:] != torch.Size(source.canvas_hw):
        raise ValueError(f"mask is {tuple(mask.shape[1:])} but the source canvas is {source.canvas_hw} (H, W).")
    if target is None:
        return mask_to_original(mask, source, fill)
    return _sample(mask, source.canvas_in_original, target.canvas_hw, target.canvas_in_original, fill)
