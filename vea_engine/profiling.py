"""Layer profiling (paper step 1): which decoder layers look at the evidence.

For each sample with ground-truth evidence boxes, one forward pass on the plain
``qa`` prompt records the head-mean attention row of the last prompt token at
*every* decoder layer (captured inside SDPA / flash attention, see
:mod:`vea_engine.capture`; no eager ``[B, H, N, N]`` maps). Restricted to the
image tokens, each layer's row ranks the tokens; the ranking is scored against
per-token evidence labels (:func:`evidence_labels`) by AUROC, average precision
and NDCG@all. Per-layer scores are averaged over samples (samples whose labels
are all one class are skipped and counted) and the top
``max(1, ceil(top_fraction * n_layers))`` layers by mean AUROC are kept (the
reference's rule: on equal AUROC the higher layer index wins, see
:func:`select_top_layers`).

The result, :class:`LayerProfile`, is saved as JSON, reloaded, turned into a
:class:`~vea_engine.layers.LayerSelection` for attribution, and drawn with
:func:`plot_profile` (PIL only).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .config import DEFAULTS
from .geometry import GridPart, ImageGeometry
from .inputs import Progress
from .layers import LayerSelection

log = logging.getLogger(__name__)

#: Overlap rules of :func:`evidence_labels` (``any`` is the paper's).
LABEL_RULES = ("any", "half", "all")
#: ``format`` tag written into profile JSON files.
PROFILE_FORMAT = "vea-layer-profile/1"
#: Relative slack for the area comparisons of ``half`` / ``all`` (float round-off at exact edges).
_AREA_RTOL = 1e-9
#: A projected box edge within this many canvas pixels of a cell edge is moved onto that cell edge, so
#: an edge that lands on a cell boundary up to float round-off (``42.00000000000004``) does not spill
#: into the next cell. Far below any real annotation (sub-pixel boxes still count) and far above the
#: float64 error of the projection (~1e-12 px on canvases of thousands of pixels).
EDGE_SNAP_PX = 1e-6



# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Profile result
# ---------------------------------------------------------------------------------------------


def n_top_layers(num_layers: int, top_fraction: float = DEFAULTS.top_layer_fraction) -> int:
    """``max(1, ceil(top_fraction * num_layers))``, immune to float round-off (0.1 * 30 -> 3, not 4)."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r} (the paper keeps 0.10 of the layers).")
    return max(1, math.ceil(round(top_fraction * num_layers, 9)))


def select_top_layers(auroc: Sequence[float], n_keep: int) -> tuple[int, ...]:
    """The ``n_keep`` layers with the highest AUROC, as the reference selects them.

    The reference sorts the layers ascending by mean AUROC and keeps the last
    ``n_keep`` (``argsort(auroc)[-n_keep:]``), then sorts those indices. With a stable
    ascending sort, layers of equal AUROC keep index order, so on a tie the *higher*
    layer index is kept: ``[0.5, 0.9, 0.9, 0.7]`` with ``n_keep=1`` gives ``(2,)``.
    (The reference calls numpy's default ``argsort``, which is not stable: with SIMD
    sorting, e.g. numpy 2.x on an AVX2 CPU, ties can come out in any order even for a
    few layers, so its tie-breaking depends on the machine. We always apply the stable
    rule.)

    ``nan`` (a layer no sample scored) ranks *below* every scored layer; among ``nan``
    layers the higher index again wins. This deliberately differs from plain
    ``np.argsort``, which sorts ``nan`` last and would therefore keep unscored layers
    first. In both implementations a ``nan`` mean cannot come out of profiling (samples
    whose labels are all one class are skipped; non-finite attention is an error), so
    real selections are the same.

    Args:
        auroc: ``[L]`` mean AUROC per layer.
        n_keep: how many layers to keep, ``1 <= n_keep <= L``.

    Returns:
        The kept layer indices, sorted ascending.
    """
    values = np.asarray(auroc, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"select_top_layers: expected one AUROC per layer (1-D, non-empty), got shape {values.shape}.")
    if not 1 <= n_keep <= values.size:
        raise ValueError(f"select_top_layers: n_keep must be in 1..{values.size}, got {n_keep}.")
    order = np.argsort(np.where(np.isnan(values), -np.inf, values), kind="stable")  # ascending, ties in index order
    return tuple(sorted(int(v) for v in order[-n_keep:]))


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer evidence-localisation scores of one model, and the layers kept.

    Attributes:
        model_name: the checkpoint profiled (path or hub id).
        num_layers: decoder depth ``L``.
        layers: selected layers (0-based, sorted): the top ``n_top_layers(L, top_fraction)``
            by mean AUROC (:func:`select_top_layers`: ties go to the higher layer).
        auroc: ``L`` mean AUROC per layer (``nan`` where no sample scored it).
        ap: ``L`` mean average precision per layer.
        ndcg: ``L`` mean NDCG@all per layer.
        n_samples: samples that contributed (labels with both classes).
        n_skipped: samples skipped because every token had the same label.
        rule: evidence label rule (``any`` / ``half`` / ``all``).
        top_fraction: fraction of layers kept.
        path: file it was loaded from (not saved, not compared).
    """

    model_name: str
    num_layers: int
    layers: tuple[int, ...]
    auroc: tuple[float, ...]
    ap: tuple[float, ...]
    ndcg: tuple[float, ...]
    n_samples: int
    n_skipped: int
    rule: str = "any"
    top_fraction: float = DEFAULTS.top_layer_fraction
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("auroc", "ap", "ndcg"):
            if len(getattr(self, name)) != self.num_layers:
                raise ValueError(
                    f"layer profile: {name} has {len(getattr(self, name))} values for {self.num_layers} layers."
                )
        bad = [layer for layer in self.layers if not 0 <= layer < self.num_layers]
        if not self.layers or bad:
            raise ValueError(
                f"layer profile: selected layers {list(self.layers)} are invalid for {self.num_layers} layers."
            )
        if self.rule not in LABEL_RULES:
            raise ValueError(f"layer profile: rule must be one of {LABEL_RULES}, got {self.rule!r}.")

    def selection(self, source: str | None = None) -> LayerSelection:
        """The selected layers as a :class:`LayerSelection` (``source = profile:<file or model>``)."""
        where = source or self.path or self.model_name
        return LayerSelection(self.layers, f"profile:{where}", self.num_layers, self.auroc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``nan`` -> ``null``)."""

        def clean(values):
            return [None if not math.isfinite(v) else float(v) for v in values]

        return {
            "format": PROFILE_FORMAT,
            "model": self.model_name,
            "num_layers": self.num_layers,
            "layers": list(self.layers),
            "rule": self.rule,
            "top_fraction": self.top_fraction,
            "n_samples": self.n_samples,
            "n_skipped": self.n_skipped,
            "auroc": clean(self.auroc),
            "ap": clean(self.ap),
            "ndcg": clean(self.ndcg),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the profile as JSON (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> LayerProfile:
        """Read a profile written by :meth:`to_json`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"layer profile: {path} does not exist; write one with 'python -m vea_engine profile'.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"layer profile: {path} is not valid JSON ({error}).") from error
        found = data.get("format") if isinstance(data, dict) else None
        if found != PROFILE_FORMAT:
            raise ValueError(
                f"layer profile: {path} is not a {PROFILE_FORMAT!r} file (format={found!r}); "
                "write one with 'python -m vea_engine profile'."
            )
        required = ("model", "num_layers", "layers", "auroc", "ap", "ndcg", "n_samples", "n_skipped")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"layer profile: {path} lacks {missing}; re-run profiling.")

        def floats(values):
            return tuple(float("nan") if v is None else float(v) for v in values)

        return cls(
            model_name=str(data["model"]),
            num_layers=int(data["num_layers"]),
            layers=tuple(int(v) for v in data["layers"]),
            auroc=floats(data["auroc"]),
            ap=floats(data["ap"]),
            ndcg=floats(data["ndcg"]),
            n_samples=int(data["n_samples"]),
            n_skipped=int(data["n_skipped"]),
            rule=str(data.get("rule", "any")),
            top_fraction=float(data.get("top_fraction", DEFAULTS.top_layer_fraction)),
            path=str(path),
        )


# ---------------------------------------------------------------------------------------------
# Profiling
# ---------------------------------------------------------------------------------------------


@torch.inference_mode()
def layer_token_scores(vlm: Any, image: Any, question: str) -> tuple[torch.Tensor, ImageGeometry]:
    """Last-prompt-token attention over this image's tokens at every decoder layer.

    One forward pass on the ``qa`` prompt (batch of one), all layers captured.

    Args:
        vlm: a loaded :class:`~vea_engine.loading.VLM`.
        image: one image (PIL, array, path, ``[H, W, C]`` tensor).
        question: its question.

    Returns:
        ``(scores [L, n_tokens] float32 CPU, geometry)``; row ``l`` is the head-mean
        attention of layer ``l``.
    """
    from .attribution import layer_scores

    scores, geometry, _, _ = layer_scores(vlm, [image], question, range(vlm.num_layers), "qa", early_exit=False)
    return scores[:, 0], geometry  # [L, n_tokens]


def _sample_fields(sample: Any, index: int) -> tuple[str, Any, str, Any]:
    """``(id, image, question, boxes)`` of a manifest :class:`~vea_engine.data.Sample` (or alike)."""
    try:
        return str(getattr(sample, "id", index)), sample.image, sample.question, sample.boxes
    except AttributeError as error:
        raise ValueError(
            f"profile: sample {index} ({type(sample).__name__}) lacks image/question/boxes; pass "
            "vea_engine.data.Sample rows from load_manifest(path, require_boxes=True)."
        ) from error


def profile_layers(
    vlm: Any,
    samples: Sequence[Any],
    rule: str = "any",
    top_fraction: float = DEFAULTS.top_layer_fraction,
    progress: Progress | None = None,
) -> LayerProfile:
    """Score every decoder layer's evidence localisation and keep the best (paper step 1).

    Args:
        vlm: a loaded :class:`~vea_engine.loading.VLM`.
        samples: rows with ``id``, ``image`` (path or image), ``question`` and ``boxes``
            (``[m, 4]`` xyxy, original-image pixels, ``m >= 1``), e.g. from
            ``load_manifest(path, require_boxes=True)``. The paper uses ~100.
        rule: evidence label rule of :func:`evidence_labels`.
        top_fraction: fraction of layers kept (paper 0.10; at least one layer).
        progress: ``progress(done, total)`` after each sample; may raise to cancel.

    Returns:
        :class:`LayerProfile`.
    """
    from .metrics import auroc, average_precision, ndcg_all

    if rule not in LABEL_RULES:
        raise ValueError(f"profile: rule must be one of {LABEL_RULES}, got {rule!r}.")
    n_keep = n_top_layers(vlm.num_layers, top_fraction)
    samples = list(samples)
    if not samples:
        raise ValueError("profile: no samples given; pass a manifest with evidence boxes (the paper uses ~100).")
    fields = [_sample_fields(sample, i) for i, sample in enumerate(samples)]
    boxless = [sid for sid, _, _, boxes in fields if not len(boxes)]
    if boxless:
        raise ValueError(
            f"profile: {len(boxless)} sample(s) have no evidence boxes (first: {boxless[0]!r}); profiling needs "
            "boxes -- load the manifest with require_boxes=True or add 'boxes' to those rows."
        )
    per_sample: list[np.ndarray] = []  # each [3, L]: auroc, ap, ndcg
    skipped = 0
    for done, (sid, image, question, boxes) in enumerate(fields, start=1):
        scores, geometry = layer_token_scores(vlm, image, question)  # [L, n_tokens]
        labels = evidence_labels(geometry, boxes, rule).numpy()  # [n_tokens]
        if labels.all() or not labels.any():
            skipped += 1
            log.info("profile: sample %s skipped: all %d tokens are %s under rule %r", sid, labels.size,
                     "evidence" if labels.all() else "non-evidence", rule)
        else:
            values = scores.double().numpy()
            per_sample.append(
                np.array(
                    [
                        [auroc(row, labels) for row in values],
                        [average_precision(row, labels) for row in values],
                        [ndcg_all(row, labels) for row in values],
                    ]
                )
            )
        if progress is not None:
            progress(done, len(fields))
    if not per_sample:
        raise ValueError(
            f"profile: all {skipped} samples were skipped (every token had the same label under rule {rule!r}); "
            "check the boxes (original-image pixels, xyxy) or use rule 'any'."
        )
    stacked = np.stack(per_sample)  # [S, 3, L]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer never scored -> nan, reported as such
        means = np.nanmean(stacked, axis=0)  # [3, L]
    layers = select_top_layers(means[0], n_keep)
    profile = LayerProfile(
        model_name=str(vlm.name),
        num_layers=int(vlm.num_layers),
        layers=layers,
        auroc=tuple(float(v) for v in means[0]),
        ap=tuple(float(v) for v in means[1]),
        ndcg=tuple(float(v) for v in means[2]),
        n_samples=len(per_sample),
        n_skipped=skipped,
        rule=rule,
        top_fraction=float(top_fraction),
    )
    log.info(
        "profile %s: layers %s (AUROC %s) from %d samples, %d skipped",
        vlm.name, list(layers), [round(profile.auroc[layer], 3) for layer in layers], len(per_sample), skipped,
    )
    return profile


# ---------------------------------------------------------------------------------------------
# Plot (PIL only)
# ---------------------------------------------------------------------------------------------

_SERIES = (("AUROC", "auroc", (200, 40, 40)), ("AP", "ap", (40, 90, 200)), ("NDCG", "ndcg", (40, 150, 70)))
#: Fill of the band behind selected layers.
SELECTED_FILL = (255, 236, 170)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # FreeType build of the bundled font
    except (OSError, TypeError, ValueError, ImportError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def plot_profile(profile: LayerProfile, width: int | None = None, height: int = 420) -> Image.Image:
    """Per-layer AUROC, AP and NDCG as lines over the layer index, selected layers shaded.

    The y axis is fixed to [0, 1] with a dashed chance line at 0.5 (AUROC of a random
    ranking); each selected layer gets a shaded band and a star on its AUROC point.

    Args:
        profile: the profile to draw.
        width: image width in pixels (default grows with the layer count, at least 640).
        height: image height in pixels.

    Returns:
        An RGB PIL image.
    """
    n = profile.num_layers
    width = width or max(640, 120 + 22 * n)
    font, small = _font(14), _font(11)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, 20, 56, 58
    x0, x1, y0, y1 = left, width - right, top, height - bottom  # plot area
    step = (x1 - x0) / n

    def px(layer: float) -> float:
        return x0 + (layer + 0.5) * step

    def py(value: float) -> float:
        return y1 - value * (y1 - y0)

    for layer in profile.layers:  # selected bands first, under everything
        draw.rectangle((x0 + layer * step, y0, x0 + (layer + 1) * step, y1), fill=SELECTED_FILL)
    for tick in range(11):  # grid + y labels
        value = tick / 10
        y = py(value)
        draw.line((x0, y, x1, y), fill=(225, 225, 225) if tick % 5 else (190, 190, 190))
        if tick % 2 == 0:
            label = f"{value:.1f}"
            w, h = _text_size(draw, label, small)
            draw.text((x0 - 6 - w, y - h / 2 - 2), label, fill="black", font=small)
    for xs in range(int(x0), int(x1), 8):  # dashed chance line
        draw.line((xs, py(0.5), min(xs + 4, x1), py(0.5)), fill=(120, 120, 120))
    w, h = _text_size(draw, "chance", small)
    draw.text((x1 - w - 4, py(0.5) - h - 6), "chance", fill=(110, 110, 110), font=small)
    draw.rectangle((x0, y0, x1, y1), outline="black")
    every = max(1, math.ceil(n / ((x1 - x0) / 28)))  # keep x labels from colliding
    for layer in range(n):
        x = px(layer)
        draw.line((x, y1, x, y1 + 4), fill="black")
        if layer % every == 0 or layer in profile.layers:
            label = str(layer)
            w, _ = _text_size(draw, label, small)
            draw.text((x - w / 2, y1 + 6), label, fill=(160, 0, 0) if layer in profile.layers else "black", font=small)
    for name, attr, colour in _SERIES:
        values = getattr(profile, attr)
        points = [(px(i), py(v)) for i, v in enumerate(values) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3 if attr == "auroc" else 2, joint="curve")
        for x, y in points:
            r = 3 if attr == "auroc" else 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    for layer in profile.layers:  # stars on the selected AUROC points
        value = profile.auroc[layer]
        if math.isfinite(value):
            x, y = px(layer), py(value)
            radii = [8 if k % 2 == 0 else 3.5 for k in range(10)]  # outer / inner points of a 5-point star
            star = [(x + r * math.sin(k * math.pi / 5), y - r * math.cos(k * math.pi / 5)) for k, r in enumerate(radii)]
            draw.polygon(star, fill=(255, 190, 0), outline=(120, 60, 0))
    # Axis titles, title, legend.
    label = "decoder layer (0-based); shaded = selected"
    w, _ = _text_size(draw, label, font)
    draw.text(((x0 + x1) / 2 - w / 2, height - 26), label, fill="black", font=font)
    bx0, by0, bx1, by1 = draw.textbbox((0, 0), "score", font=font)
    axis = Image.new("RGBA", (bx1 - bx0 + 4, by1 - by0 + 4), (255, 255, 255, 0))
    ImageDraw.Draw(axis).text((2 - bx0, 2 - by0), "score", fill="black", font=font)
    axis = axis.rotate(90, expand=True)
    image.paste(axis, (8, int((y0 + y1) / 2 - axis.height / 2)), axis)
    name = Path(profile.model_name).name or profile.model_name
    details = (
        f": layers {', '.join(map(str, profile.layers))}  |  rule {profile.rule}, "
        f"{profile.n_samples} samples ({profile.n_skipped} skipped)"
    )
    while len(name) > 8 and _text_size(draw, name + details, font)[0] > width - x0 - 10:
        name = name[: len(name) - 4] + "..."  # shorten long model names to fit
    draw.text((x0, 10), name + details, fill="black", font=font)
    lx = x1
    for name, _, colour in reversed(_SERIES):
        w, h = _text_size(draw, name, small)
        lx -= w + 6
        draw.text((lx, 44 - h), name, fill=colour, font=small)
        lx -= 18
        draw.line((lx, 44 - h / 2, lx + 14, 44 - h / 2), fill=colour, width=3)
        lx -= 10
    return image
