"""The whole method in one call: attribute, build the evidence map, highlight, answer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .answer import answer
from .attribution import AttentionMap, Progress, evidence_map, extract_attention, render_canvases
from .config import DEFAULTS
from .geometry import ImageGeometry, remap_mask
from .images import images_to_uint8, uint8_to_tensor
from .layers import LayerSelection, select_layers
from .loading import VLM
from .mask import blend

log = logging.getLogger(__name__)

METHODS = ("base", "inst", "vea")


@dataclass(frozen=True)
class VEAResult:
    """Outputs of :func:`run_vea` for a batch.

    Attributes:
        answers: ``method -> one answer per image`` for the requested methods.
        evidence: ``[B, H, W]`` evidence map in [0, 1] on the answering model's canvas.
        highlighted: ``[B, H, W, 3]`` the image the ``vea`` answer was given on.
        attention: the attribution (on the mask model's canvas).
        layers: the layer selection used.
    """

    answers: dict[str, list[str]]
    evidence: torch.Tensor
    highlighted: torch.Tensor
    attention: AttentionMap
    layers: LayerSelection




def align_mask(
    mask: torch.Tensor, source: ImageGeometry, images: Any, target: VLM | None = None, fill: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Carry a mask made on one model's canvas to the image another model answers (delegate).

    Args:
        mask: ``[B, h, w]`` on ``source``'s canvas (e.g. from :func:`evidence_map`).
        source: geometry of the model that made the mask (``AttentionMap.geometry``).
        images: the original images ``[B, H0, W0, C]`` (or a list), the same size the
            mask model was given.
        target: the answering model; None keeps the original image.
        fill: mask value where the source model saw nothing (e.g. cropped away).

    Returns:
        ``(mask [B, H, W], image [B, H, W, 3])`` aligned pixel for pixel: the target
        model's canvas rendering of the originals (or the originals themselves).
    """
    originals = images_to_uint8(images)
    if originals[0].shape[:2] != tuple(source.original_hw):
        raise ValueError(
            f"align mask: the images are {originals[0].shape[1]}x{originals[0].shape[0]} but the mask was made for "
            f"{source.original_hw[1]}x{source.original_hw[0]} originals (W x H); pass the images the mask model saw."
        )
    if target is None:
        return remap_mask(mask, source, None, fill), uint8_to_tensor(originals)
    canvases, boxes, _ = render_canvases(target, originals)
    geometry = ImageGeometry(
        canvas_hw=canvases[0].shape[:2], parts=(), original_hw=source.original_hw, canvas_in_original=boxes[0]
    )
    return remap_mask(mask, source, geometry, fill), uint8_to_tensor(canvases)


def run_vea(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: LayerSelection | Sequence[int] | str | None = None,
    lam: float = DEFAULTS.lam,
    sigma: float = DEFAULTS.sigma,
    alpha: float = DEFAULTS.alpha,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    methods: Sequence[str] = ("base", "vea"),
    apply_denoise: bool = True,
    apply_smooth: bool = True,
    hint: bool = True,
    delegate: VLM | None = None,
    progress: Progress | None = None,
) -> VEAResult:
    """VEA end to end (paper steps 2-6) on a batch of same-size images.

    Args:
        vlm: the model that answers.
        images: ``[B, H, W, C]`` in [0, 1] or a list of same-size images.
        questions: one question, or one per image.
        layers: a :class:`LayerSelection`, indices, a mode name, or None (preset /
            fallback of the *mask* model).
        lam, sigma, alpha: paper hyper-parameters (denoise, smooth, highlight).
        methods: any of ``base`` (qa prompt, original image), ``inst`` (vea prompt,
            original image), ``vea`` (vea prompt, highlighted image).
        apply_denoise, apply_smooth, hint: ablation switches (``hint=False`` answers
            the highlighted image with the ``qa`` prompt).
        delegate: a model that makes the mask for ``vlm`` (default: ``vlm`` itself).

    Returns:
        :class:`VEAResult`.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}.")
    mask_model = delegate or vlm
    selection = layers if isinstance(layers, LayerSelection) else select_layers(layers, mask_model.num_layers, mask_model.name)
    attention = extract_attention(mask_model, images, questions, selection.check(mask_model.num_layers), progress=progress)
    evidence = evidence_map(attention, lam, sigma, apply_denoise, apply_smooth)  # [B, h, w] on the mask model's canvas
    canvas = attention.canvas
    if delegate is not None and delegate is not vlm:
        evidence, canvas = align_mask(evidence, attention.geometry, images, vlm)
    highlighted = blend(canvas, evidence, alpha)
    answers: dict[str, list[str]] = {}
    questions = list(attention.questions)
    for method in methods:
        if method == "base":
            answers[method] = answer(vlm, images, questions, "qa", max_new_tokens=max_new_tokens, progress=progress)
        elif method == "inst":
            answers[method] = answer(vlm, images, questions, "vea", max_new_tokens=max_new_tokens, progress=progress)
        else:
            style = "vea" if hint else "qa"
            answers[method] = answer(vlm, highlighted, questions, style, max_new_tokens=max_new_tokens, progress=progress)
    return VEAResult(answers, evidence, highlighted, attention, selection)
