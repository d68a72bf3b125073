"""Attention-guided zoom (ViCrop-style): the window of highest evidence, cropped from the original and
answered together with the whole image.

1. **Window** (:func:`zoom_windows`). On an evidence map in original-image pixels,
   every window of each candidate size at every integer position is scored exactly
   (integral image): the evidence it holds above a floor, ``sum(max(E - floor * max(E), 0))``
   (``floor`` 0.5: the part of the map a half-max threshold keeps, as the evidence
   boxes use; below it, weak attention spread over the image would always favour the
   largest window). The window is the *smallest* size whose best position holds at
   least 99.9% of the most evidence any window holds, so the evidence fits whole in
   it when it can, with as much zoom as that allows; of the positions that hold it,
   the middle one is taken, which centres the evidence. Sizes (:func:`window_sizes`):
   ``n_scales`` sides from ``min_scale`` to ``max_scale`` (1x to 2x) times a base side, of
   width / height ``aspect`` (default 1: square, the shape of almost every model's input,
   so the crop is not squashed or padded). The base side is the model's input side
   (:attr:`~vea_engine.families.base.FamilyAdapter.input_side`: a tile, or the fixed
   input), as in ViCrop; but no window side exceeds ``max_share`` (0.6) of the image's
   side, so for an image smaller than ``max_scale / max_share`` input sides (about 1700 px
   for a 512-px input) the base shrinks to ``max_share * image side / max_scale``: the
   windows then run from 30% to 60% of the image. A window is therefore always strictly
   inside an image of 2 px or more, and a local piece of evidence is zoomed on whatever
   the image's size (a 448-px image: windows of 134 to 268 px).
2. **Crop** (:func:`crop_windows`) from the *original* at full resolution; a crop smaller
   than the model's input side is answered upscaled (bicubic, aspect kept) until its longer side
   is the input side (:func:`upscale_crop`), as ViCrop's crops reach the model resized to its
   input resolution: the model sees the region larger than in the whole image.
3. **Answer** (:func:`answer_zoomed`). Families whose processor and model take
   several images in one prompt (``adapter.multi_image``, :func:`multi_image_model_types`) get
   ``[original, crop]`` and the prompt :data:`ZOOM_PREFIX` + the paper's prompt
   (``qa``, or ``vea`` when the first image is highlighted); the others answer on
   the crop alone with the paper's prompt.

Windows are ``(x0, y0, x1, y1)`` integer original pixels, ``x1`` / ``y1`` exclusive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import DEFAULTS, MASK_DTYPE, build_prompt
from .geometry import Frame, mask_to_original
from .images import images_to_uint8, to_rgb_uint8
from .inputs import Progress, broadcast_questions, check_context, check_image_sizes, on_model
from .loading import VLM

#: The line before the paper's prompt when the model sees ``[original, crop]``.
ZOOM_PREFIX = (
    "The first image is the whole picture. The second image is a zoomed-in view of a region of the first image, "
    "at a higher resolution. "
)

#: Prompt styles of :func:`answer_zoomed`: ``qa`` (the first image is the original) or ``vea`` (it is highlighted).
ZOOM_PROMPT_STYLES = ("qa", "vea")


#: A window holding at least ``1 - TIE_TOLERANCE`` of the most evidence any window holds counts as the best.
TIE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ZoomDefaults:
    """Defaults of :func:`zoom_windows` (the ones the node shows)."""

    min_scale: float = 1.0  # smallest window side, in model input sides
    max_scale: float = 2.0  # largest
    n_scales: int = 5  # sizes tried from min_scale to max_scale
    aspect: float = 1.0  # window width / height
    floor: float = 0.5  # evidence below floor * max counts as none
    max_share: float = 0.6  # largest window side, as a share of the image side


ZOOM_DEFAULTS = ZoomDefaults()


@dataclass(frozen=True)
class Window:
    """The zoom window of one image.

    Attributes:
        box: ``(x0, y0, x1, y1)`` integer original pixels, ``x1`` / ``y1`` exclusive.
        score: the share of the map's evidence above the floor that the window holds, in ``[0, 1]``;
            0 for a constant map (then the centred window of the smallest size); None for a window
            given as it is (``zoom_answer(windows=...)``).
    """

    box: tuple[int, int, int, int]
    score: float | None


def multi_image_model_types() -> list[str]:
    """The ``model_type``\ s answered with ``[original, crop]`` in one prompt (their adapter's ``multi_image``);
    the others answer on the crop alone."""
    from .families import ADAPTERS

    return sorted(t for adapter in ADAPTERS if adapter.multi_image for t in adapter.model_types)


def window_sizes(
    original_hw: tuple[int, int],
    input_side: int,
    min_scale: float = ZOOM_DEFAULTS.min_scale,
    max_scale: float = ZOOM_DEFAULTS.max_scale,
    n_scales: int = ZOOM_DEFAULTS.n_scales,
    aspect: float = ZOOM_DEFAULTS.aspect,
    max_share: float = ZOOM_DEFAULTS.max_share,
) -> list[tuple[int, int]]:
    """Candidate ``(h, w)`` window sizes, ascending, unique.

    Side ``s = base * f`` for ``n_scales`` factors ``f`` from ``min_scale`` to ``max_scale``;
    ``w = round(s * sqrt(aspect))``, ``h = round(s / sqrt(aspect))``, each clamped to
    ``[1, max(1, floor(max_share * image side))]``. ``base = min(input_side, max_share * m / max_scale)``
    with ``m = min(W0 / sqrt(aspect), H0 * sqrt(aspect))``: the model's input side, or less when the
    image cannot hold ``max_scale`` input sides within ``max_share`` of its sides.
    """
    if not (isinstance(input_side, int) and input_side >= 1):
        raise ValueError(f"zoom: input_side must be a positive integer (pixels), got {input_side!r}.")
    if not (0 < min_scale <= max_scale):
        raise ValueError(
            f"zoom: the scale range must satisfy 0 < min_scale <= max_scale, got {min_scale}..{max_scale}; "
            "the default is 1..2 model input sides."
        )
    if not (isinstance(n_scales, int) and n_scales >= 1):
        raise ValueError(f"zoom: n_scales must be a positive integer, got {n_scales!r}.")
    if not (0.1 <= aspect <= 10):
        raise ValueError(f"zoom: aspect (width / height) must be in [0.1, 10], got {aspect!r}; 1 is square.")
    if not (0 < max_share <= 1):
        raise ValueError(
            f"zoom: max_share must be in (0, 1], got {max_share!r}; {ZOOM_DEFAULTS.max_share} is the default."
        )
    H0, W0 = (int(v) for v in original_hw)
    root = aspect**0.5
    base = min(float(input_side), max_share * min(W0 / root, H0 * root) / max_scale)
    max_h, max_w = max(1, math.floor(max_share * H0)), max(1, math.floor(max_share * W0))
    factors = np.linspace(min_scale, max_scale, n_scales) if n_scales > 1 else np.array([min_scale])
    sizes = set()
    for f in factors:
        side = base * float(f)
        h = min(max(round(side / root), 1), max_h)
        w = min(max(round(side * root), 1), max_w)
        sizes.add((h, w))
    return sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))


def _window_sums(integral: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum over every ``h x w`` window, ``[H0 - h + 1, W0 - w + 1]``, from a zero-padded integral image."""
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def best_window(evidence: np.ndarray, sizes: Sequence[tuple[int, int]], floor: float = ZOOM_DEFAULTS.floor) -> Window:
    """The zoom window of one ``[H0, W0]`` map among ``sizes`` (ascending; see module docstring).

    Evidence is ``max(E - floor * max(E), 0)``; the window is the smallest size whose best
    position holds at least ``1 - TIE_TOLERANCE`` of the most evidence any window holds, at
    the middle of the positions that do.
    """
    m = np.asarray(evidence, dtype=np.float64)
    H0, W0 = m.shape
    if not m.max() > m.min():  # constant map: no evidence anywhere; the centred window of the smallest size
        h, w = sizes[0]
        y0, x0 = (H0 - h) // 2, (W0 - w) // 2
        return Window((x0, y0, x0 + w, y0 + h), 0.0)
    above = np.clip(m - floor * m.max(), 0, None)  # [H0, W0]
    total = float(above.sum())
    integral = np.zeros((H0 + 1, W0 + 1))
    integral[1:, 1:] = above.cumsum(0).cumsum(1)
    scored = [(h, w, _window_sums(integral, h, w)) for h, w in sizes]  # each [H0 - h + 1, W0 - w + 1]
    cut = (1 - TIE_TOLERANCE) * max(float(s.max()) for _, _, s in scored)
    for h, w, sums in scored:  # ascending sizes: the smallest size that reaches the band
        ys, xs = np.nonzero(sums >= cut)
        if len(ys):
            y0, x0 = int(np.median(ys).round()), int(np.median(xs).round())  # the middle of those positions
            if sums[y0, x0] < cut:  # they are not a rectangle: take the best one
                y0, x0 = (int(v) for v in np.unravel_index(int(sums.argmax()), sums.shape))
            return Window((x0, y0, x0 + w, y0 + h), min(float(sums[y0, x0]) / total, 1.0))
    raise AssertionError("unreachable: the best window reaches the band")


def zoom_windows(
    evidence: torch.Tensor,
    input_side: int,
    min_scale: float = ZOOM_DEFAULTS.min_scale,
    max_scale: float = ZOOM_DEFAULTS.max_scale,
    n_scales: int = ZOOM_DEFAULTS.n_scales,
    aspect: float = ZOOM_DEFAULTS.aspect,
    floor: float = ZOOM_DEFAULTS.floor,
    max_share: float = ZOOM_DEFAULTS.max_share,
) -> list[Window]:
    """The zoom window of each image.

    Args:
        evidence: ``[B, H0, W0]`` evidence in original-image pixels (see :func:`evidence_on_original`).
        input_side: the answering model's input side in pixels (``vlm.adapter.input_side``).
        min_scale, max_scale, n_scales, aspect, max_share: window sizes (:func:`window_sizes`).
        floor: evidence below ``floor * max`` counts as none, in ``[0, 1)``.

    Returns:
        One :class:`Window` per image.
    """
    if not isinstance(evidence, torch.Tensor) or evidence.ndim != 3:
        raise ValueError(f"zoom_windows: evidence must be [B, H0, W0], got {getattr(evidence, 'shape', evidence)!r}.")
    values = evidence.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(values).all():
        raise ValueError("zoom_windows: the evidence map contains NaN or inf; give a finite map.")
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"zoom_windows: floor must be in [0, 1), got {floor!r}; {ZOOM_DEFAULTS.floor} is the default.")
    sizes = window_sizes(values.shape[1:], input_side, min_scale, max_scale, n_scales, aspect, max_share)
    return [best_window(m, sizes, floor) for m in values]


def evidence_on_original(mask: torch.Tensor, frame: Frame | None) -> torch.Tensor:
    """A map on a model canvas carried to the original (``frame`` given; 0 where the model saw nothing),
    or returned as it is (``frame`` None: already in original pixels). ``[B, H, W] -> [B, H0, W0]`` float32."""
    if frame is None:
        return mask.to(MASK_DTYPE)
    return mask_to_original(mask, frame, fill=0.0)


def crop_windows(images: Any, windows: Sequence[Window]) -> list[np.ndarray]:
    """Crops of the originals at full resolution, ``[y1 - y0, x1 - x0, 3]`` uint8 each.

    Args:
        images: the originals (``[B, H0, W0, C]`` tensor in [0, 1], or a list).
        windows: one per image (:func:`zoom_windows`).
    """
    originals = images_to_uint8(images)
    if len(windows) != len(originals):
        raise ValueError(f"crop_windows: {len(windows)} windows for {len(originals)} images; give one per image.")
    crops = []
    for image, window in zip(originals, windows, strict=True):
        x0, y0, x1, y1 = window.box
        H0, W0 = image.shape[:2]
        if not (0 <= x0 < x1 <= W0 and 0 <= y0 < y1 <= H0):
            raise ValueError(f"crop_windows: window {window.box} does not lie in a {W0}x{H0} image (W x H).")
        crops.append(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return crops


def upscale_crop(crop: np.ndarray, input_side: int) -> np.ndarray:
    """The crop as the model is given it: one whose longer side is under ``input_side`` is resized (bicubic,
    aspect kept) until that side is ``input_side``, the other ``round(side * input_side / longer)``
    (at least 1); a larger crop is returned as it is. ``[h, w, 3]`` uint8 -> ``[h', w', 3]`` uint8."""
    h, w = crop.shape[:2]
    longer = max(h, w)
    if longer >= input_side:
        return crop
    size = (max(1, round(w * input_side / longer)), max(1, round(h * input_side / longer)))  # PIL: (W, H)
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC))


def zoom_prompt(question: str, prompt_style: str = "qa") -> str:
    """The prompt of an ``[image, crop]`` answer: :data:`ZOOM_PREFIX` + the paper's ``qa`` / ``vea`` prompt."""
    if prompt_style not in ZOOM_PROMPT_STYLES:
        raise ValueError(f"zoom: prompt_style must be one of {ZOOM_PROMPT_STYLES}, got {prompt_style!r}.")
    return ZOOM_PREFIX + build_prompt(question, prompt_style)


@torch.inference_mode()
def answer_zoomed(
    vlm: VLM,
    originals: Any,
    crops: Sequence[Any],
    questions: str | Sequence[str],
    prompt_style: str = "qa",
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: Progress | None = None,
) -> list[str]:
    """Greedy answers from each image with its zoomed-in crop.

    Each crop is first brought up to the model's input side (:func:`upscale_crop`).
    Multi-image families (``vlm.adapter.multi_image``) see ``[original, crop]`` in one
    prompt, :func:`zoom_prompt`; the others see the crop alone with the paper's prompt
    (``build_prompt(question, prompt_style)``). Pairs whose original and crop sizes match
    are generated in one batch; the rest one group per size pair.

    Args:
        vlm: the answering model.
        originals: ``[B, H0, W0, C]`` in [0, 1] or a list: the first image of each prompt (the
            original, or a highlighted rendering for ``prompt_style="vea"``).
        crops: one crop per image (``[h, w, 3]`` uint8 arrays, ``[1, h, w, C]`` / ``[h, w, C]`` tensors).
        questions: one question, or one per image.
        prompt_style: one of :data:`ZOOM_PROMPT_STYLES`.
        max_new_tokens: answer length limit.
        progress: called after each generated token; may raise to cancel.

    Returns:
        One stripped answer per image, in order.
    """
    from .answering import answer, check_max_new_tokens, generate_answers

    check_max_new_tokens(max_new_tokens)
    firsts = images_to_uint8(originals, "originals")
    crops = [to_rgb_uint8(c[0] if getattr(c, "ndim", 0) == 4 else c, f"crops[{i}]") for i, c in enumerate(crops)]
    if len(crops) != len(firsts):
        raise ValueError(f"answer_zoomed: {len(crops)} crops for {len(firsts)} images; give one crop per image.")
    crops = [upscale_crop(crop, vlm.adapter.input_side) for crop in crops]
    check_image_sizes(vlm.adapter, firsts, "image")
    check_image_sizes(vlm.adapter, crops, "crop")
    questions = broadcast_questions(questions, len(firsts))
    if not vlm.adapter.multi_image:
        return answer(vlm, crops, questions, prompt_style, max_new_tokens=max_new_tokens, progress=progress)
    prompts = [zoom_prompt(q, prompt_style) for q in questions]
    buckets: dict[tuple, list[int]] = {}
    for i, (first, crop) in enumerate(zip(firsts, crops, strict=True)):
        buckets.setdefault((first.shape, crop.shape), []).append(i)
    answers = [""] * len(firsts)
    for bucket in buckets.values():
        pairs = [[Image.fromarray(firsts[i]), Image.fromarray(crops[i])] for i in bucket]
        inputs = vlm.adapter.encode_multi(pairs, [prompts[i] for i in bucket])
        check_context(vlm, int(inputs["input_ids"].shape[-1]), max_new_tokens)
        for i, text in zip(bucket, generate_answers(vlm, on_model(vlm, inputs), max_new_tokens, progress), strict=True):
            answers[i] = text
    return answers


@dataclass(frozen=True)
class ZoomResult:
    """What :func:`zoom_answer` returns.

    Attributes:
        answers: one per image.
        windows: one per image, original pixels.
        crops: ``[h, w, 3]`` uint8 crops of the originals, one per image.
    """

    answers: list[str]
    windows: list[Window]
    crops: list[np.ndarray]

    def crop_images(self) -> list[torch.Tensor]:
        """The crops as ComfyUI images, ``[1, h, w, 3]`` float32 in [0, 1] each."""
        return [torch.from_numpy(crop)[None].float() / 255.0 for crop in self.crops]

    def windows_json(self) -> str:
        """``[{"box": [x0, y0, x1, y1], "score": s}, ...]``: one entry per image (x1, y1 exclusive; score null
        for a given window)."""
        return json.dumps(
            [{"box": list(w.box), "score": None if w.score is None else round(w.score, 6)} for w in self.windows]
        )


def zoom_answer(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    evidence: torch.Tensor | None,
    frame: Frame | None = None,
    min_scale: float = ZOOM_DEFAULTS.min_scale,
    max_scale: float = ZOOM_DEFAULTS.max_scale,
    aspect: float = ZOOM_DEFAULTS.aspect,
    n_scales: int = ZOOM_DEFAULTS.n_scales,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: Progress | None = None,
    max_share: float = ZOOM_DEFAULTS.max_share,
    windows: Sequence[tuple[int, int, int, int]] | None = None,
) -> ZoomResult:
    """Window, crop and answer (the whole method; see module docstring).

    Args:
        vlm: the answering model (its ``input_side`` sizes the windows).
        images: the originals ``[B, H0, W0, C]`` in [0, 1] (or a list of same-size images).
        questions: one question, or one per image.
        evidence: ``[B, H, W]`` map: on a model canvas with its ``frame``, or in original
            pixels (``frame`` None). For an :class:`~vea_engine.attribution.AttentionMap`, pass
            :func:`~vea_engine.boxes.token_map` and its ``geometry.frame``.
        frame: where the canvas of ``evidence`` lies in the original; None: original pixels.
        min_scale, max_scale, aspect, n_scales, max_share: window sizes (:func:`window_sizes`).
        max_new_tokens, progress: as :func:`answer_zoomed` (``qa`` prompt; crops upscaled as there).
        windows: one ``(x0, y0, x1, y1)`` per image (integer original pixels, e.g.
            :func:`~vea_engine.boxes.core_regions`): zoom there as given (score None); ``evidence``
            and the window sizes are then not used.
    """
    originals = images_to_uint8(images)
    if windows is not None:
        given = [Window(tuple(int(v) for v in box), None) for box in windows]
        crops = crop_windows(originals, given)
        return ZoomResult(answer_zoomed(vlm, originals, crops, questions, "qa", max_new_tokens, progress), given, crops)
    on_original = evidence_on_original(evidence, frame)  # [B, H0, W0]
    H0, W0 = originals[0].shape[:2]
    if tuple(on_original.shape[1:]) != (H0, W0) or len({o.shape for o in originals}) != 1:
        raise ValueError(
            f"zoom: the evidence is {on_original.shape[2]}x{on_original.shape[1]} in original pixels but the images "
            f"are {W0}x{H0} (W x H); give the originals the mask was made for (or the mask model's frame)."
        )
    if on_original.shape[0] != len(originals):
        raise ValueError(f"zoom: {on_original.shape[0]} evidence maps for {len(originals)} images; give one each.")
    windows = zoom_windows(
        on_original, vlm.adapter.input_side, min_scale, max_scale, n_scales, aspect, max_share=max_share
    )
    crops = crop_windows(originals, windows)
    answers = answer_zoomed(vlm, originals, crops, questions, "qa", max_new_tokens, progress)
    return ZoomResult(answers, windows, crops)
