"""Attribution: one forward pass -> per-token evidence scores -> evidence map.

Paper step 2: the plain QA prompt and the image go through the model once;
the attention row of the last prompt token is averaged over heads, then over
the selected layers, and restricted to the image tokens. The image is first
rendered at the model's input resolution (:meth:`FamilyAdapter.render`), so
the scores, the evidence map and the highlighted image all live on the same
pixel grid as the model's patches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .capture import StopForward, capture_attention_rows, decoder_attention_modules
from .config import DEFAULTS, MASK_DTYPE, build_prompt
from .geometry import ImageGeometry
from .images import images_to_uint8, uint8_to_tensor
from .loading import VLM
from .mask import denoise, gaussian_smooth, minmax_normalize, paint

#: ``progress(done, total)``; may raise to cancel (e.g. an interruption).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AttentionMap:
    """Evidence scores of a batch of images, as one model saw them.

    Attributes:
        scores: ``[B, n_tokens]`` float32 (CPU) head- and layer-mean attention of the
            query row over this image's tokens, in token order.
        geometry: token layout shared by the batch (same-size images).
        canvas: ``[B, H, W, 3]`` float32 in [0, 1]: the model-input rendering.
        layers: decoder layers averaged.
        model_name: the model that produced it.
        question: the prompts' questions, one per image.
    """

    scores: torch.Tensor
    geometry: ImageGeometry
    canvas: torch.Tensor
    layers: tuple[int, ...]
    model_name: str
    questions: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.scores.shape != (self.canvas.shape[0], self.geometry.n_tokens):
            raise ValueError(
                f"scores {tuple(self.scores.shape)} do not match {self.canvas.shape[0]} images x "
                f"{self.geometry.n_tokens} tokens"
            )

    @property
    def batch_size(self) -> int:
        return int(self.scores.shape[0])

    def with_scores(self, scores: torch.Tensor) -> AttentionMap:
        """A copy with new token scores ``[B, n_tokens]`` (e.g. after denoising)."""
        return AttentionMap(scores, self.geometry, self.canvas, self.layers, self.model_name, self.questions)


def broadcast_questions(questions: str | Sequence[str], batch: int) -> list[str]:
    """One question per image: a single question is reused for the whole batch."""
    if questions is None or isinstance(questions, str):
        questions = [questions]
    questions = list(questions)
    if len(questions) == 1:
        questions = questions * batch
    if len(questions) != batch:
        raise ValueError(
            f"question: got {len(questions)} questions for {batch} images; give one question for all images "
            "or exactly one per image."
        )
    for q in questions:
        build_prompt(q)  # validates: non-empty
    return questions


@contextmanager
def layer_progress(model: Any, progress: Progress | None, total_layers: int | None = None) -> Iterator[None]:
    """Call ``progress(i + 1, total)`` as each text decoder layer starts (hooks removed on exit)."""
    if progress is None:
        yield
        return
    modules = decoder_attention_modules(model)
    total = total_layers or len(modules)
    handles = [
        module.register_forward_pre_hook(lambda *_, i=i: progress(min(i + 1, total), total))
        for i, module in enumerate(modules[:total])
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def model_inputs(vlm: VLM, images: list[np.ndarray], prompts: list[str]) -> Any:
    """Processor outputs on the model's device, floating inputs in the model's dtype."""
    pil = [Image.fromarray(image) for image in images]
    inputs = vlm.adapter.encode(pil, prompts)
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(vlm.device)
            if value.is_floating_point():
                value = value.to(vlm.dtype)
        moved[key] = value
    return type(inputs)(moved) if hasattr(inputs, "data") else moved


def render_canvases(vlm: VLM, images: Any) -> tuple[list[np.ndarray], list[tuple[float, float, float, float]], list]:
    """Model-input renderings of a batch: ``(canvases [H, W, 3] uint8, boxes in original, original sizes)``."""
    originals = images_to_uint8(images)
    rendered = [vlm.adapter.render(image) for image in originals]
    return [r[0] for r in rendered], [r[1] for r in rendered], [o.shape[:2] for o in originals]


@torch.inference_mode()
def layer_scores(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: Sequence[int],
    prompt_style: str = "qa",
    template: str | None = None,
    early_exit: bool = True,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, ImageGeometry, list[np.ndarray], list[str]]:
    """Per-layer attention of the last prompt token over each image's tokens (one forward pass).

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1], or a list of same-size images
            (PIL, arrays, paths).
        questions: one question, or one per image.
        layers: decoder layers to read (0-based).
        prompt_style: prompt of the attribution pass; the paper uses ``qa``.
        template: for ``custom`` prompts.
        early_exit: stop the forward pass after the deepest requested layer.
        progress: called per decoder layer; may raise to cancel.

    Returns:
        ``(scores [L, B, n_tokens] float32 CPU in sorted layer order, geometry shared by
        the batch, canvases [H, W, 3] uint8, questions one per image)``.
    """
    canvases, boxes, originals = render_canvases(vlm, images)
    questions = broadcast_questions(questions, len(canvases))
    prompts = [build_prompt(q, prompt_style, template) for q in questions]
    layers = tuple(sorted({int(layer) for layer in layers}))
    inputs = model_inputs(vlm, canvases, prompts)
    geometries = [vlm.adapter.geometry(inputs, i, originals[i], boxes[i]) for i in range(len(canvases))]
    if len(set(geometries)) != 1:
        raise ValueError("images in one batch must share a size (their token layouts differ); split the batch.")
    geometry = geometries[0]
    positions = vlm.adapter.image_token_positions(inputs["input_ids"], geometries)
    for i, pos in enumerate(positions):
        if pos.numel() != geometry.n_tokens:
            raise RuntimeError(
                f"{vlm.adapter.family}: image {i} has {pos.numel()} image tokens in the prompt but its geometry "
                f"predicts {geometry.n_tokens}; the adapter does not match this processor configuration."
            )
    with (
        capture_attention_rows(vlm.model, layers, (-1,), stop_after_last=early_exit) as recorder,
        layer_progress(vlm.model, progress, (max(layers) + 1) if early_exit else None),
    ):
        try:
            vlm.model(**inputs, use_cache=False, logits_to_keep=1)
        except StopForward:
            pass
    rows = recorder.stacked()[:, :, -1, :].to("cpu", MASK_DTYPE)  # [L, B, K]
    scores = torch.stack([rows[:, i, pos.cpu()] for i, pos in enumerate(positions)], dim=1)  # [L, B, n_tokens]
    return scores, geometry, canvases, questions


def extract_attention(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: Sequence[int],
    prompt_style: str = "qa",
    template: str | None = None,
    early_exit: bool = True,
    progress: Progress | None = None,
) -> AttentionMap:
    """Per-token evidence scores of each image for its question (paper step 2).

    Head-mean attention of the last prompt token, averaged over ``layers`` and
    restricted to the image tokens; arguments as :func:`layer_scores`.

    Returns:
        :class:`AttentionMap` with ``scores [B, n_tokens]``.
    """
    layers = tuple(sorted({int(layer) for layer in layers}))
    scores, geometry, canvases, questions = layer_scores(
        vlm, images, questions, layers, prompt_style, template, early_exit, progress
    )
    return AttentionMap(
        scores=scores.mean(dim=0),  # [B, n_tokens]
        geometry=geometry,
        canvas=uint8_to_tensor(canvases),
        layers=layers,
        model_name=vlm.name,
        questions=tuple(questions),
    )


def denoise_scores(attention: AttentionMap, lam: float = DEFAULTS.lam) -> AttentionMap:
    """Paper step 3 on every token grid of the map (see :func:`vea_engine.mask.denoise`)."""
    grids = [denoise(grid, lam) for grid in attention.geometry.split(attention.scores)]
    return attention.with_scores(torch.cat([g.flatten(1) for g in grids], dim=1))


def paint_scores(attention: AttentionMap) -> torch.Tensor:
    """Token scores painted on the canvas, ``[B, H, W]``; overlapping grids are averaged."""
    geometry = attention.geometry
    total = None
    count = torch.zeros(geometry.canvas_hw, dtype=MASK_DTYPE)
    for part, grid in zip(geometry.parts, geometry.split(attention.scores)):
        painted = paint(grid, geometry.canvas_hw, part.box)
        total = painted if total is None else total + painted
        x0, y0, x1, y1 = part.box
        count[y0:y1, x0:x1] += 1
    if len(geometry.parts) == 1:
        return total
    return total / count.clamp(min=1)


def evidence_map(
    attention: AttentionMap,
    lam: float = DEFAULTS.lam,
    sigma: float = DEFAULTS.sigma,
    apply_denoise: bool = True,
    apply_smooth: bool = True,
) -> torch.Tensor:
    """Paper steps 3-4: denoise, paint, smooth, normalise -> ``[B, H, W]`` in [0, 1] on the canvas."""
    if apply_denoise:
        attention = denoise_scores(attention, lam)
    pixel_map = paint_scores(attention)
    if apply_smooth:
        pixel_map = gaussian_smooth(pixel_map, sigma)
    return minmax_normalize(pixel_map)


def attention_preview(attention: AttentionMap, opacity: float = 0.6) -> torch.Tensor:
    """Raw token scores as a heat map over the canvas, ``[B, H, W, 3]`` in [0, 1] (for display)."""
    from .mask import heatmap

    colours = heatmap(minmax_normalize(paint_scores(attention)))  # [B, H, W, 3]
    return (1 - opacity) * attention.canvas + opacity * colours
