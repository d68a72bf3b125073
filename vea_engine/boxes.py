"""Evidence boxes: the connected regions of an evidence map as boxes and crops of the original image.

A map (an evidence mask, or the denoised token scores painted on the canvas) is
thresholded, its connected components are labelled (``scipy.ndimage.label``,
8-connectivity) and each component becomes a box in *original-image* pixels
``(x0, y0, x1, y1)`` -- integers, ``x1`` / ``y1`` exclusive (the box is
``image[y0:y1, x0:x1]``) -- with a score: the share of the map's evidence mass
inside the component. Boxes are sorted by score, best first. :func:`core_boxes` gives them in ComfyUI's core
bounding-box format (``{"x", "y", "width", "height"}``, top-left corner and size in the
same pixels), and :func:`core_regions` reads that format back as one region per image.

**Thresholds** (:data:`BOX_MODES`):

* ``relative``: pixels ``>= threshold * max`` of the map;
* ``mass``: the fewest highest pixels that hold ``threshold`` of the map's mass
  (top-p): pixels ``>= v``, ``v`` the largest value whose pixels at or above it
  sum to at least ``threshold * total``.

Components smaller than ``min_area`` (a fraction of the map's pixels) are dropped,
except that every image keeps at least its best component.

**Which map to box.** A map on a model canvas is labelled there and each box is
carried to the original through the canvas's :class:`~vea_engine.geometry.Frame`
(an affine map per axis, so boxes move exactly; rounded outwards to whole pixels,
clipped to the image); a map already in original pixels is labelled as it is. The
paper's evidence map is blurred with ``sigma = 0.5 x`` the shorter side: its level
sets are wide round blobs whose extent depends on the blur, not on the evidence, so
no fixed threshold recovers a region from it. :func:`attention_boxes` therefore
boxes the *denoised token scores painted on the canvas* (paper steps 2-3, no
smoothing, min-max), where a region of evidence tokens is a plateau with sharp
edges: the default ``relative`` 0.5 cuts each edge half way, also after the
bilinear resampling that carries a delegate's map to another canvas. Boxing a
smoothed mask is allowed (e.g. ``mass`` 0.5 for a coarse region) but does not give
tight boxes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from .config import DEFAULTS, MASK_DTYPE
from .geometry import Frame, ImageGeometry

#: Threshold modes of :func:`evidence_boxes` (see module docstring).
BOX_MODES = ("relative", "mass")


@dataclass(frozen=True)
class BoxDefaults:
    """Defaults of :func:`evidence_boxes` (the ones the nodes show)."""

    mode: str = "relative"
    threshold: float = 0.5  # relative: fraction of the max; mass: share of the evidence mass
    min_area: float = 0.001  # fraction of the map's pixels
    max_boxes: int = 4


BOX_DEFAULTS = BoxDefaults()


@dataclass(frozen=True)
class EvidenceBox:
    """One box in original-image pixels.

    Attributes:
        box: ``(x0, y0, x1, y1)`` integers, ``x1`` / ``y1`` exclusive: ``image[y0:y1, x0:x1]``.
        score: share of the map's evidence mass inside the component, in ``[0, 1]``.
    """

    box: tuple[int, int, int, int]
    score: float

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


def _check_threshold(mode: str, threshold: float, min_area: float, max_boxes: int) -> None:
    if mode not in BOX_MODES:
        raise ValueError(f"evidence_boxes: mode must be one of {BOX_MODES}, got {mode!r}.")
    if not (isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0):
        raise ValueError(
            f"evidence_boxes: threshold must be in (0, 1], got {threshold!r}; "
            f"{BOX_DEFAULTS.threshold} is the default (half the max, or half the evidence mass)."
        )
    if not (isinstance(min_area, (int, float)) and 0.0 <= min_area < 1.0):
        raise ValueError(f"evidence_boxes: min_area must be a fraction of the image in [0, 1), got {min_area!r}.")
    if not (isinstance(max_boxes, int) and max_boxes >= 1):
        raise ValueError(f"evidence_boxes: max_boxes must be a positive integer, got {max_boxes!r}.")


def threshold_value(values: np.ndarray, mode: str = BOX_DEFAULTS.mode, threshold: float = BOX_DEFAULTS.threshold):
    """The cut of one map: pixels ``>=`` it are evidence.

    Args:
        values: ``[H, W]`` non-negative float map.
        mode: ``relative`` (``threshold * max``) or ``mass`` (the value at which the highest
            pixels first hold ``threshold`` of the total mass).
        threshold: in ``(0, 1]``.

    Returns:
        A float; ``inf`` when the map has no positive value (nothing is evidence).
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    peak = float(flat.max(initial=0.0))
    if peak <= 0.0:
        return math.inf
    if mode == "relative":
        return threshold * peak
    ordered = np.sort(flat)[::-1]  # descending
    cumulative = np.cumsum(ordered)
    k = int(np.searchsorted(cumulative, threshold * cumulative[-1] * (1 - 1e-12)))  # first index reaching the share
    return float(ordered[min(k, len(ordered) - 1)])


def _frame_of(where: Frame | ImageGeometry | Any | None) -> Frame | None:
    if where is None or isinstance(where, Frame):
        return where
    if isinstance(where, ImageGeometry):
        return where.frame
    geometry = getattr(where, "geometry", None)  # an AttentionMap
    if isinstance(geometry, ImageGeometry):
        return geometry.frame
    raise ValueError(f"evidence_boxes: frame must be a Frame, an ImageGeometry or an AttentionMap, got {where!r}.")


def _to_original(
    boxes: np.ndarray, map_hw: tuple[int, int], frame: Frame | None, original_hw: tuple[int, int]
) -> np.ndarray:
    """``[N, 4]`` pixel boxes (exclusive ends) on the labelled map -> integer original pixels, outward, clipped."""
    H0, W0 = original_hw
    if frame is None:
        out = boxes.astype(np.float64)
    else:
        x0, y0, x1, y1 = frame.box
        H, W = map_hw
        sx, sy = (x1 - x0) / W, (y1 - y0) / H
        out = np.stack(
            [x0 + boxes[:, 0] * sx, y0 + boxes[:, 1] * sy, x0 + boxes[:, 2] * sx, y0 + boxes[:, 3] * sy], axis=1
        )
    eps = 1e-6  # a canvas edge that lands on a whole original pixel stays there
    out = np.stack(
        [np.floor(out[:, 0] + eps), np.floor(out[:, 1] + eps), np.ceil(out[:, 2] - eps), np.ceil(out[:, 3] - eps)], 1
    )
    out[:, 0::2] = out[:, 0::2].clip(0, W0)
    out[:, 1::2] = out[:, 1::2].clip(0, H0)
    return out.astype(np.int64)


def evidence_boxes(
    mask: torch.Tensor,
    frame: Frame | ImageGeometry | Any | None = None,
    mode: str = BOX_DEFAULTS.mode,
    threshold: float = BOX_DEFAULTS.threshold,
    min_area: float = BOX_DEFAULTS.min_area,
    max_boxes: int = BOX_DEFAULTS.max_boxes,
) -> list[list[EvidenceBox]]:
    """Connected regions of evidence as boxes in original-image pixels (see module docstring).

    Args:
        mask: ``[B, H, W]`` non-negative map (negative values count as 0): on a model
            canvas when ``frame`` is given, else in original pixels.
        frame: where the canvas lies in the original (a :class:`~vea_engine.geometry.Frame`,
            an ``ImageGeometry`` or an ``AttentionMap``, whose frame is used); None when
            ``mask`` already is in original pixels.
        mode: one of :data:`BOX_MODES`.
        threshold: in ``(0, 1]``: fraction of the max (``relative``) or share of the mass (``mass``).
        min_area: components with fewer than ``min_area * H * W`` pixels are dropped (the
            best component of an image is always kept).
        max_boxes: at most this many boxes per image.

    Returns:
        Per image, up to ``max_boxes`` :class:`EvidenceBox` sorted by score (best first),
        at least one. A map with no positive value gives the whole image, score 0.
    """
    from scipy import ndimage

    _check_threshold(mode, threshold, min_area, max_boxes)
    if not isinstance(mask, torch.Tensor) or mask.ndim != 3:
        raise ValueError(f"evidence_boxes: mask must be a [B, H, W] tensor, got {getattr(mask, 'shape', mask)!r}.")
    frame = _frame_of(frame)
    values = mask.detach().to("cpu", torch.float64).clamp(min=0).numpy()  # [B, H, W]
    if not np.isfinite(values).all():
        raise ValueError("evidence_boxes: the mask contains NaN or inf; give a finite map.")
    _, H, W = values.shape
    if frame is not None and frame.canvas_hw != (H, W):
        raise ValueError(
            f"evidence_boxes: the mask is {W}x{H} but the frame's canvas is {frame.canvas_hw[1]}x{frame.canvas_hw[0]} "
            "(W x H); pass the frame of the canvas the mask is on, or a mask in original pixels without a frame."
        )
    original_hw = frame.original_hw if frame is not None else (H, W)
    out: list[list[EvidenceBox]] = []
    for m in values:
        cut = threshold_value(m, mode, threshold)
        if not math.isfinite(cut):
            out.append([EvidenceBox((0, 0, original_hw[1], original_hw[0]), 0.0)])
            continue
        labels, n = ndimage.label(m >= cut, structure=np.ones((3, 3), dtype=bool))  # [H, W], 8-connected
        index = np.arange(1, n + 1)
        areas = ndimage.sum_labels(np.ones_like(m), labels, index)  # [n]
        mass = ndimage.sum_labels(m, labels, index) / m.sum()  # [n] share of the total
        slices = ndimage.find_objects(labels)  # per label: (rows, cols) slices
        order = np.argsort(-mass, kind="stable")
        keep = [i for i in order if areas[i] >= min_area * H * W] or [int(order[0])]
        keep = keep[:max_boxes]
        raw = np.array([[slices[i][1].start, slices[i][0].start, slices[i][1].stop, slices[i][0].stop] for i in keep])
        boxes = _to_original(raw, (H, W), frame, original_hw)
        out.append([EvidenceBox(tuple(int(v) for v in b), float(mass[i])) for b, i in zip(boxes, keep, strict=True)])
    return out


def attention_boxes(attention: Any, lam: float = DEFAULTS.lam, **options: Any) -> list[list[EvidenceBox]]:
    """Boxes of an :class:`~vea_engine.attribution.AttentionMap`: its denoised token scores painted on the
    canvas (no smoothing, min-max) boxed with :func:`evidence_boxes` (``options``: ``mode``, ``threshold``,
    ``min_area``, ``max_boxes``) and carried to the original through the attention's frame."""
    return evidence_boxes(token_map(attention, lam), attention.geometry.frame, **options)


def token_map(attention: Any, lam: float = DEFAULTS.lam) -> torch.Tensor:
    """Denoised token scores painted on the canvas and min-max normalised, ``[B, H, W]`` in [0, 1]:
    the paper's evidence map without its smoothing (sharp region edges, for boxes and zoom)."""
    from .attribution import evidence_map

    return evidence_map(attention, lam=lam, apply_smooth=False)


def boxes_mask(boxes: list[list[EvidenceBox]], original_hw: tuple[int, int]) -> torch.Tensor:
    """``[B, H0, W0]`` float32: 1 inside any box of the image, 0 elsewhere."""
    H0, W0 = (int(v) for v in original_hw)
    out = torch.zeros((len(boxes), H0, W0), dtype=MASK_DTYPE)
    for b, image_boxes in enumerate(boxes):
        for item in image_boxes:
            x0, y0, x1, y1 = item.box
            out[b, y0:y1, x0:x1] = 1.0
    return out


def crop_boxes(images: torch.Tensor, boxes: list[list[EvidenceBox]]) -> list[torch.Tensor]:
    """Crops of the original images, image by image then box by box: each ``[1, y1 - y0, x1 - x0, C]``.

    Args:
        images: ``[B, H0, W0, C]`` (ComfyUI IMAGE) the boxes were made for.
        boxes: from :func:`evidence_boxes`, one list per image.
    """
    _check_images(images, boxes, "crop_boxes")
    crops = []
    for image, image_boxes in zip(images, boxes, strict=True):
        for item in image_boxes:
            x0, y0, x1, y1 = item.box
            crops.append(image[y0:y1, x0:x1][None].clone())
    return crops


#: Colour of the best box in previews, then of the others (RGB).
BOX_COLOURS = ((255, 40, 40), (255, 200, 0), (0, 200, 255), (120, 255, 80))


def draw_boxes(images: torch.Tensor, boxes: list[list[EvidenceBox]]) -> torch.Tensor:
    """The images with their boxes outlined (best box red), ``[B, H0, W0, 3]`` float in [0, 1].

    Outlines are drawn inside each box, ``max(2, min(H0, W0) // 150)`` px wide.
    """
    _check_images(images, boxes, "draw_boxes")
    out = []
    for image, image_boxes in zip(images, boxes, strict=True):
        rgb = image[..., :3].detach().cpu().clamp(0, 1)
        pil = Image.fromarray((rgb.numpy() * 255).round().astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        width = max(2, min(pil.size) // 150)
        for k, item in reversed(list(enumerate(image_boxes))):  # the best box on top
            x0, y0, x1, y1 = item.box
            if x1 > x0 and y1 > y0:
                draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOURS[min(k, len(BOX_COLOURS) - 1)], width=width)
        out.append(torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0))
    return torch.stack(out)


def boxes_json(boxes: list[list[EvidenceBox]]) -> str:
    """``[[{"box": [x0, y0, x1, y1], "score": s}, ...], ...]``: one list per image (x1, y1 exclusive)."""
    return json.dumps([[{"box": list(item.box), "score": round(item.score, 6)} for item in image] for image in boxes])


def core_boxes(boxes: list[list[EvidenceBox]]) -> list[list[dict[str, Any]]]:
    """The boxes in ComfyUI's core bounding-box format (its ``BOUNDING_BOX`` socket, ComfyUI 0.33+).

    One list per image, best first, of ``{"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0,
    "score": s}``: integer original pixels, ``(x, y)`` the top-left corner, the same box as
    ``image[y0:y1, x0:x1]``; ``score`` as :attr:`EvidenceBox.score` (Draw BBoxes orders by it).
    """
    return [
        [
            {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "score": float(item.score)}
            for item in image
            for x0, y0, x1, y1 in [item.box]
        ]
        for image in boxes
    ]


def core_regions(value: Any, n_images: int, original_hw: tuple[int, int], who: str = "boxes") -> list[tuple]:
    """The region of each image that core bounding boxes (``BOUNDING_BOX``) mark: the smallest box holding
    all of that image's boxes, in integer original pixels ``(x0, y0, x1, y1)`` (``x1`` / ``y1`` exclusive),
    rounded outwards and clipped to the image.

    Args:
        value: one box ``{"x", "y", "width", "height", ...}`` (pixels, ``(x, y)`` top-left), a list of
            boxes (for every image), or a list of such lists (one for every image, or one for all), as
            ComfyUI's detectors and Create Bounding Boxes give them (:func:`core_boxes` too).
        n_images: the batch size.
        original_hw: ``(H0, W0)`` of the images.
        who: the caller, named in errors (a node's input).

    Returns:
        ``n_images`` boxes.
    """
    H0, W0 = (int(v) for v in original_hw)
    if isinstance(value, dict):
        value = [[value]]
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        value = [value]
    if not (isinstance(value, list) and value and all(isinstance(v, list) for v in value)):
        got = "no box" if isinstance(value, list) and not value else type(value).__name__
        raise ValueError(
            f"{who}: expected bounding boxes ({{x, y, width, height}}, a list of them, or one list per image), "
            f"got {got}; connect a BOUNDING_BOX output."
        )
    if len(value) not in (1, n_images):
        raise ValueError(f"{who}: {len(value)} lists of boxes for {n_images} images; give one list, or one per image.")
    regions = []
    for index, image_boxes in enumerate(value * n_images if len(value) == 1 else value):
        if not image_boxes:
            raise ValueError(f"{who}: image {index} has no box; give at least one box per image.")
        corners = []
        for box in image_boxes:
            numbers = [box.get(k) if isinstance(box, dict) else None for k in ("x", "y", "width", "height")]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
                raise ValueError(
                    f"{who}: a box of image {index} is {box!r:.80}; each needs finite x, y, width, height."
                )
            x, y, w, h = numbers
            corners.append((min(x, x + w), min(y, y + h), max(x, x + w), max(y, y + h)))  # a negative size too
        x0, y0 = max(math.floor(min(c[0] for c in corners)), 0), max(math.floor(min(c[1] for c in corners)), 0)
        x1, y1 = min(math.ceil(max(c[2] for c in corners)), W0), min(math.ceil(max(c[3] for c in corners)), H0)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(
                f"{who}: the boxes of image {index} cover no pixel of the {W0}x{H0} image (W x H); give boxes in "
                "the image's pixels with a positive width and height."
            )
        regions.append((x0, y0, x1, y1))
    return regions


def _check_images(images: torch.Tensor, boxes: list, who: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"{who}: images must be [B, H, W, C], got {getattr(images, 'shape', images)!r}.")
    if len(boxes) != images.shape[0]:
        raise ValueError(f"{who}: {len(boxes)} lists of boxes for {images.shape[0]} images; give one per image.")


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (exclusive ends)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def evidence_source(
    images: torch.Tensor,
    mask: torch.Tensor | None = None,
    attention: Any | None = None,
    lam: float = DEFAULTS.lam,
    who: str = "evidence",
) -> tuple[torch.Tensor, Frame | None]:
    """The map to box or zoom on and its frame, from what a user connects.

    * ``attention`` alone: its denoised token scores painted on the canvas (:func:`token_map`), on
      the attention's frame;
    * ``mask`` of the attention's canvas size (with ``attention``): the mask on that frame;
    * ``mask`` of the images' size: a mask in original pixels (e.g. VEA Align Mask without an
      answering model), no frame.

    Args:
        images: ``[B, H0, W0, C]`` the originals.
        mask: ``[B, H, W]`` (or ``[1, H, W]``, used for every image) or None.
        attention: an :class:`~vea_engine.attribution.AttentionMap` or None.
        lam: denoise threshold for ``attention`` alone.
        who: the caller, named in errors (a node's name).

    Returns:
        ``(map [B, H, W] float32, frame or None)``.
    """
    H0, W0 = images.shape[1:3]
    B = images.shape[0]
    frame = attention.geometry.frame if attention is not None else None
    if frame is not None and frame.original_hw != (H0, W0):
        raise ValueError(
            f"{who}: the attention was made for {frame.original_hw[1]}x{frame.original_hw[0]} images but the image "
            f"is {W0}x{H0} (W x H); connect the original images the attention was extracted from."
        )
    if mask is None:
        if attention is None:
            raise ValueError(f"{who}: connect a mask or an attention (from VEA Extract Attention); neither is set.")
        evidence = token_map(attention, lam)
    else:
        mask = mask[None] if mask.ndim == 2 else mask
        hw = tuple(mask.shape[1:])
        if frame is not None and hw == frame.canvas_hw:
            evidence = mask
        elif hw == (H0, W0):
            evidence, frame = mask, None
        else:
            if frame is not None:
                sizes = f"neither the image ({W0}x{H0}) nor the attention's model input "
                sizes += f"({frame.canvas_hw[1]}x{frame.canvas_hw[0]})"
            else:
                sizes = f"not the image's {W0}x{H0}"
            raise ValueError(
                f"{who}: the mask is {hw[1]}x{hw[0]}, {sizes} (W x H); connect the attention the mask was made "
                "from, or align the mask to the original (VEA Align Mask without answer_model)."
            )
    evidence = evidence.to(MASK_DTYPE)
    if evidence.shape[0] == 1 and B > 1:
        evidence = evidence.expand(B, -1, -1)
    if evidence.shape[0] != B:
        raise ValueError(f"{who}: {evidence.shape[0]} masks for {B} images; give one mask, or one per image.")
    return evidence, frame


@dataclass(frozen=True)
class BoxesResult:
    """What :func:`box_evidence` returns.

    Attributes:
        boxes: per image, its boxes (best first).
        mask: ``[B, H0, W0]`` float32, 1 inside the boxes.
        crops: ``[1, h, w, C]`` crops of the originals, image by image then box by box.
        preview: ``[B, H0, W0, 3]`` the originals with the boxes drawn.
    """

    boxes: list[list[EvidenceBox]]
    mask: torch.Tensor
    crops: list[torch.Tensor]
    preview: torch.Tensor

    def to_json(self) -> str:
        """See :func:`boxes_json`."""
        return boxes_json(self.boxes)


def box_evidence(
    images: torch.Tensor,
    mask: torch.Tensor | None = None,
    attention: Any | None = None,
    lam: float = DEFAULTS.lam,
    who: str = "evidence boxes",
    **options: Any,
) -> BoxesResult:
    """Boxes, their mask, crops and a preview for the originals (``images`` ``[B, H0, W0, C]`` in [0, 1]).

    The map comes from ``mask`` and/or ``attention`` as :func:`evidence_source` says; ``options``
    (``mode``, ``threshold``, ``min_area``, ``max_boxes``) go to :func:`evidence_boxes`.
    """
    evidence, frame = evidence_source(images, mask, attention, lam, who)
    boxes = evidence_boxes(evidence, frame, **options)
    return BoxesResult(
        boxes, boxes_mask(boxes, images.shape[1:3]), crop_boxes(images, boxes), draw_boxes(images, boxes)
    )
