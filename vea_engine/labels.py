"""Evidence labels: which image tokens of one image overlap its ground-truth evidence boxes.

Layer profiling (paper step 1, :mod:`vea_engine.profiling`) scores each decoder
layer's attention ranking against these per-token labels. A token's cell is its
canvas pixel box (:meth:`~vea_engine.geometry.ImageGeometry.cell_boxes`); boxes are
carried from original-image pixels onto the canvas by the image's frame, and the
area of each cell they cover is computed exactly (no rasterisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .geometry import GridPart, ImageGeometry

#: Overlap rules of :func:`evidence_labels` (``any`` is the paper's).
LABEL_RULES = ("any", "half", "all")
#: Relative slack for the area comparisons of ``half`` / ``all`` (float round-off at exact edges).
_AREA_RTOL = 1e-9
#: A projected box edge within this many canvas pixels of a cell edge is moved onto that cell edge, so
#: an edge that lands on a cell boundary up to float round-off (``42.00000000000004``) does not spill
#: into the next cell. Far below any real annotation (sub-pixel boxes still count) and far above the
#: float64 error of the projection (~1e-12 px on canvases of thousands of pixels).
EDGE_SNAP_PX = 1e-6


def _snap_to_edges(values: torch.Tensor, edges: torch.Tensor, tol: float | None = None) -> torch.Tensor:
    """``values`` with every entry within ``tol`` of one of ``edges`` replaced by the nearest edge.

    Args:
        values: ``[k]`` coordinates (float64).
        edges: ``[E]`` cell edge coordinates along the same axis (float64, E >= 1).
        tol: snapping distance in pixels (default :data:`EDGE_SNAP_PX`).
    """
    tol = EDGE_SNAP_PX if tol is None else tol
    distance = (values[:, None] - edges[None, :]).abs()  # [k, E]
    nearest = distance.argmin(1)  # [k]
    return torch.where(distance.gather(1, nearest[:, None])[:, 0] <= tol, edges[nearest], values)


def _covered_area(part: GridPart, boxes: torch.Tensor) -> torch.Tensor:
    """Area of each cell of one token grid covered by the union of ``boxes`` (exact, float64).

    Args:
        part: a row-major ``rows x cols`` grid over ``part.box`` (canvas pixels).
        boxes: ``[m, 4]`` xyxy evidence boxes in canvas pixels.

    Returns:
        ``[rows * cols]`` covered area per cell, token order.

    Box edges within :data:`EDGE_SNAP_PX` of a cell edge are first moved onto it
    (projection round-off must not spill a box into the next cell). The plane is
    then cut along every cell edge and every box edge; each elementary rectangle
    lies in one cell and is either inside the union of the boxes or outside it, so
    summing the covered rectangles per cell is exact. Cost is
    ``O((cols + 2m) * (rows + 2m) * m)``.
    """
    gx0, gy0, gx1, gy1 = part.box
    cw, ch = (gx1 - gx0) / part.cols, (gy1 - gy0) / part.rows
    col_edges = gx0 + torch.arange(part.cols + 1, dtype=torch.float64) * cw  # [cols + 1], as cell_boxes()
    row_edges = gy0 + torch.arange(part.rows + 1, dtype=torch.float64) * ch  # [rows + 1]
    if boxes.shape[0] == 0:
        return torch.zeros(part.n_tokens, dtype=torch.float64)
    boxes = torch.stack(  # [m, 4] edges on (or within EDGE_SNAP_PX of) a cell edge now lie exactly on it
        [
            _snap_to_edges(boxes[:, 0], col_edges),
            _snap_to_edges(boxes[:, 1], row_edges),
            _snap_to_edges(boxes[:, 2], col_edges),
            _snap_to_edges(boxes[:, 3], row_edges),
        ],
        1,
    )
    bx = boxes[:, [0, 2]].reshape(-1).clamp(float(col_edges[0]), float(col_edges[-1]))  # [2m]
    by = boxes[:, [1, 3]].reshape(-1).clamp(float(row_edges[0]), float(row_edges[-1]))
    xs, ys = torch.unique(torch.cat([col_edges, bx])), torch.unique(torch.cat([row_edges, by]))  # [X], [Y] sorted
    cx, cy = (xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2  # [Y-1] centres of elementary intervals
    dx, dy = xs[1:] - xs[:-1], ys[1:] - ys[:-1]
    in_x = (boxes[:, None, 0] <= cx[None]) & (cx[None] < boxes[:, None, 2])  # [m, X-1]
    in_y = (boxes[:, None, 1] <= cy[None]) & (cy[None] < boxes[:, None, 3])  # [m, Y-1]
    covered = (in_y[:, :, None] & in_x[:, None, :]).any(0)  # [Y-1, X-1] inside the union
    area = dy[:, None] * dx[None, :] * covered  # [Y-1, X-1]
    col = (torch.searchsorted(col_edges, cx, right=True) - 1).clamp(0, part.cols - 1)  # cell column
    row = (torch.searchsorted(row_edges, cy, right=True) - 1).clamp(0, part.rows - 1)  # [Y-1] cell row
    cell = (row[:, None] * part.cols + col[None, :]).reshape(-1)  # [(Y-1) * (X-1)]
    return torch.zeros(part.n_tokens, dtype=torch.float64).index_add_(0, cell, area.reshape(-1))


def evidence_labels(geometry: ImageGeometry, boxes_original: Any, rule: str = "any") -> torch.Tensor:
    """Evidence label of every image token of one image (paper step 1).

    Boxes are carried from original-image pixels to the canvas with
    :meth:`ImageGeometry.original_boxes_to_canvas` (parts outside the canvas are
    dropped); a token's cell is its canvas pixel box (:meth:`ImageGeometry.cell_boxes`).
    With ``coverage`` = area of the cell covered by the union of the boxes:

    * ``any``: ``coverage > 0`` (the paper's rule; touching an edge is not overlap);
    * ``half``: ``coverage >= cell_area / 2``;
    * ``all``: ``coverage == cell_area`` (the cell lies inside the boxes).

    Coverage is exact geometry, not a rasterisation: boxes are not rounded to whole
    pixels, so a sub-pixel box still marks the cell(s) it lies in, and ``x`` and ``y``
    are scaled independently (a squashing resize squashes the boxes too). A projected
    box edge within :data:`EDGE_SNAP_PX` (1e-6 canvas px) of a cell edge is moved onto
    it, so an edge that lands on a cell boundary up to float round-off does not spill
    into the next cell (an edge 1e-3 px past the boundary does). ``half``/``all``
    compare with a ``1e-9`` relative slack so cells whose edge coincides with a box
    edge count.

    Args:
        geometry: token layout of the image as the model saw it.
        boxes_original: ``[m, 4]`` xyxy boxes in original-image pixels (list, array or
            tensor); ``m = 0`` gives all False.
        rule: ``any``, ``half`` or ``all``.

    Returns:
        ``[n_tokens]`` bool, token order (True = evidence).
    """
    if rule not in LABEL_RULES:
        raise ValueError(f"evidence label rule must be one of {LABEL_RULES}, got {rule!r}.")
    boxes = torch.as_tensor(np.asarray(boxes_original, dtype=np.float64)).reshape(-1, 4)  # [m, 4]
    if not torch.isfinite(boxes).all():
        raise ValueError(f"evidence boxes must be finite numbers, got {boxes.tolist()}.")
    bad = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"evidence box {boxes[bad[0]].tolist()} has x1 <= x0 or y1 <= y0; boxes are xyxy [x0, y0, x1, y1]."
        )
    canvas_boxes = geometry.original_boxes_to_canvas(boxes) if boxes.shape[0] else boxes  # [m, 4]
    cells = geometry.cell_boxes()  # [n_tokens, 4] float64
    labels = []
    for part in geometry.parts:
        part_cells = cells[part.token_start : part.token_start + part.n_tokens]  # [rows * cols, 4]
        coverage = _covered_area(part, canvas_boxes)  # [rows * cols]
        cell_area = (part_cells[:, 2] - part_cells[:, 0]) * (part_cells[:, 3] - part_cells[:, 1])
        if rule == "any":
            labels.append(coverage > 0)
        elif rule == "half":
            labels.append(coverage >= 0.5 * cell_area * (1 - _AREA_RTOL))
        else:
            labels.append(coverage >= cell_area * (1 - _AREA_RTOL))
    return torch.cat(labels) if labels else torch.zeros(0, dtype=torch.bool)
