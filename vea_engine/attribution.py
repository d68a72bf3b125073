"""Attribution: one forward pass -> per-token evidence scores -> evidence map.

Paper step 2: the plain QA prompt and the *original* image go through the model
once -- the very inputs of the base answer; the attention row of the last prompt
token is averaged over heads, then over the selected layers, and restricted to
the image tokens. The scores are laid on the image's token grids over its
canvas (:meth:`FamilyAdapter.render`), the model-input rendering on which the
evidence map is painted and the image highlighted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .answering import Prefilled, decode_answers, prefill_answers
from .capture import AttentionRecorder, StopForward, capture_attention_rows
from .config import DEFAULTS, MASK_DTYPE
from .geometry import ImageGeometry
from .images import to_levels
from .inputs import EncodedBatch, Progress, check_context, encode_batch, layer_progress
from .layers import LayerSelection, for_model
from .loading import VLM
from .mask import denoise, gaussian_smooth, minmax_normalize, paint


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
        levels: optionally the canvas's 8-bit levels ``[B, H, W, 3]`` uint8, kept when the map
            is made from the uint8 canvas (saves converting the float canvas back).
    """

    scores: torch.Tensor
    geometry: ImageGeometry
    canvas: torch.Tensor
    layers: tuple[int, ...]
    model_name: str
    questions: tuple[str, ...]
    levels: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scores.shape != (self.canvas.shape[0], self.geometry.n_tokens):
            raise ValueError(
                f"scores {tuple(self.scores.shape)} do not match {self.canvas.shape[0]} images x "
                f"{self.geometry.n_tokens} tokens"
            )

    @property
    def canvas_uint8(self) -> torch.Tensor:
        """The canvas as its exact 8-bit levels, ``[B, H, W, 3]`` uint8 (what :func:`highlight_uint8` takes)."""
        return self.levels if self.levels is not None else to_levels(self.canvas)

    def to(self, device: torch.device | str) -> AttentionMap:
        """The same map with its tensors (scores, canvas, levels) on ``device``."""
        levels = None if self.levels is None else self.levels.to(device)
        return replace(self, scores=self.scores.to(device), canvas=self.canvas.to(device), levels=levels)

    @property
    def batch_size(self) -> int:
        return int(self.scores.shape[0])

    def rows(self, index: slice, questions: Sequence[str]) -> AttentionMap:
        """The map of the images ``index`` selects, asked ``questions`` (one per image)."""
        levels = None if self.levels is None else self.levels[index]
        return replace(self, scores=self.scores[index], canvas=self.canvas[index], questions=tuple(questions),
                       levels=levels)  # fmt: skip

    def with_scores(self, scores: torch.Tensor) -> AttentionMap:
        """A copy with new token scores ``[B, n_tokens]`` (e.g. after denoising)."""
        return replace(self, scores=scores)


@torch.inference_mode()
def layer_scores(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: LayerSelection | Sequence[int],
    prompt_style: str = "qa",
    template: str | None = None,
    early_exit: bool = True,
    progress: Progress | None = None,
    rounding: str = "truncate",
) -> tuple[torch.Tensor, ImageGeometry, list[np.ndarray], list[str]]:
    """Per-layer attention of the last prompt token over each image's tokens (one forward pass).

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1], or a list of same-size images
            (PIL, arrays, paths). They are encoded as given, like the base answer.
        questions: one question, or one per image.
        layers: decoder layers to read: a :class:`~vea_engine.layers.LayerSelection` or
            0-based indices (checked against the model by :func:`~vea_engine.layers.for_model`).
        prompt_style: prompt of the attribution pass; the paper uses ``qa``.
        template: for ``custom`` prompts.
        early_exit: stop the forward pass after the deepest requested layer.
        progress: called per decoder layer; may raise to cancel.
        rounding: how the canvases' de-normalised pixels become uint8 (``truncate``: the reference).

    Returns:
        ``(scores [L, B, n_tokens] float32 CPU in sorted layer order, geometry shared by
        the batch, canvases [H, W, 3] uint8, questions one per image)``.
    """
    scores, batch = _layer_scores(
        vlm, images, questions, layers, prompt_style, template, early_exit, progress, rounding
    )
    return scores, batch.geometry, [c.pixels for c in batch.canvases], list(batch.questions)


@torch.inference_mode()
def _layer_scores(vlm, images, questions, layers, prompt_style="qa", template=None, early_exit=True, progress=None,
                  rounding="truncate") -> tuple[torch.Tensor, EncodedBatch]:  # fmt: skip
    """:func:`layer_scores` as ``(scores [L, B, n_tokens], the encoded batch)``."""
    batch = encode_batch(vlm, images, questions, prompt_style, template, rounding)
    layers = for_model(layers, vlm.layer_kinds, vlm.name).layers  # sorted, unique, softmax-attention layers
    with (
        capture_attention_rows(vlm.model, layers, (-1,), stop_after_last=early_exit) as recorder,
        layer_progress(vlm.model, progress, (max(layers) + 1) if early_exit else None),
    ):
        try:
            vlm.model(**batch.inputs, use_cache=False, logits_to_keep=1)
        except StopForward:
            pass
    return _token_scores(recorder, batch), batch


def _token_scores(recorder: AttentionRecorder, batch: EncodedBatch) -> torch.Tensor:
    """The recorded last-token rows restricted to each sequence's image tokens: ``[L, B, n_tokens]`` float32 CPU."""
    rows = recorder.stacked()[:, :, -1, :].to("cpu", MASK_DTYPE)  # [L, B, K]
    return torch.stack([rows[:, i, pos.cpu()] for i, pos in enumerate(batch.positions)], dim=1)  # [L, B, n_tokens]


def _attention_map(vlm: VLM, scores: torch.Tensor, batch: EncodedBatch, layers: tuple[int, ...]) -> AttentionMap:
    """The map of ``[L, B, n_tokens]`` layer scores: their :func:`layer_mean` on the batch's canvases."""
    return batch_map(vlm, layer_mean(scores), batch, layers)


def batch_map(vlm: VLM, scores: torch.Tensor, batch: EncodedBatch, layers: tuple[int, ...]) -> AttentionMap:
    """An :class:`AttentionMap` of token scores ``[B, n_tokens]`` of an encoded batch, on its canvases
    (their exact uint8 levels kept)."""
    levels = torch.from_numpy(np.stack([c.pixels for c in batch.canvases]))  # [B, H, W, 3] uint8
    return AttentionMap(
        scores=scores,  # [B, n_tokens]
        geometry=batch.geometry,
        canvas=levels.to(MASK_DTYPE) / 255.0,
        layers=layers,
        model_name=vlm.name,
        questions=tuple(batch.questions),
        levels=levels,
    )


def attention_maps(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layer_sets: Mapping[str, Sequence[int]],
    base_answer_tokens: int | None = None,
    progress: Progress | None = None,
    rounding: str = "truncate",
) -> tuple[dict[str, AttentionMap], list[str] | None]:
    """Attributions over several layer sets from ONE pass, optionally as the base answer's prefill.

    The rows of every layer in the union of ``layer_sets`` are recorded in one forward
    pass, then each set's map is the :func:`layer_mean` of its own layers: bit for bit
    what :func:`extract_attention` gives for that set alone.

    With ``base_answer_tokens``, the pass is the prefill of the base answer: the
    attribution pass and the base answer see identical inputs (the plain QA prompt and
    the original image), so the base answer's prefill runs with the capture active and
    decoding continues from that prefill's own cache. The answers are token for token
    those of :func:`~vea_engine.answering.answer` with the ``qa`` prompt, for the price of
    the base answer alone. Without it, the pass stops after the deepest layer needed.

    Args:
        vlm, images, questions, rounding: as :func:`layer_scores` (same-size images).
        layer_sets: ``name -> layer indices`` (e.g. ``{"selected": (14, 15), "all": range(28)}``).
        base_answer_tokens: also decode the base answer, at most this many tokens.
        progress: per decoder layer (attribution alone) or per generated token (with the answer).

    Returns:
        ``({name: AttentionMap with scores [B, n_tokens]}, base answers or None)``.
    """
    maps, prefilled = attention_and_prefill(vlm, images, questions, layer_sets, base_answer_tokens, progress, rounding)
    return maps, None if prefilled is None else decode_answers(vlm, [prefilled], progress)[0]


def attention_and_prefill(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layer_sets: Mapping[str, Sequence[int]],
    base_answer_tokens: int | None = None,
    progress: Progress | None = None,
    rounding: str = "truncate",
) -> tuple[dict[str, AttentionMap], Prefilled | None]:
    """:func:`attention_maps` with the base answer left after its prefill (its first token), to be
    decoded later, alone or together with other answers (:func:`~vea_engine.answering.decode_answers`)."""
    sets = {name: for_model(layers, vlm.layer_kinds, vlm.name).layers for name, layers in layer_sets.items()}
    if not sets:
        raise ValueError("attention_maps: layer_sets is empty; name at least one set of layers.")
    union = tuple(sorted(set().union(*sets.values())))
    prefilled = None
    if base_answer_tokens is None:
        scores, batch = _layer_scores(vlm, images, questions, union, progress=progress, rounding=rounding)
    else:
        batch = encode_batch(vlm, images, questions, "qa", None, rounding)
        check_context(vlm, int(batch.inputs["input_ids"].shape[-1]), base_answer_tokens)  # [B, N]
        with torch.inference_mode(), capture_attention_rows(vlm.model, union, (-1,)) as recorder:
            prefilled = prefill_answers(vlm, batch.inputs, base_answer_tokens, progress)
        scores = _token_scores(recorder, batch)  # [L, B, n_tokens]
    row = {layer: i for i, layer in enumerate(union)}
    maps = {
        name: _attention_map(vlm, scores[[row[layer] for layer in layers]], batch, layers)
        for name, layers in sets.items()
    }
    return maps, prefilled


def layer_mean(scores: torch.Tensor) -> torch.Tensor:
    """Mean over the layer axis of ``[L, B, n]`` scores -> ``[B, n]``, summed layer by layer in float32
    and divided by ``L``: the order of the reference code's ``np.mean(axis=0)``, so equal inputs give
    bit-equal means."""
    total = scores[0].clone()
    for layer in scores[1:]:
        total += layer
    return total / scores.shape[0]


def extract_attention(
    vlm: VLM, images: Any, questions: str | Sequence[str], layers: LayerSelection | Sequence[int], **options: Any
) -> AttentionMap:
    """Per-token evidence scores of each image for its question (paper step 2).

    Head-mean attention of the last prompt token, averaged over ``layers`` and
    restricted to the image tokens. Arguments and keyword ``options``
    (``prompt_style``, ``template``, ``early_exit``, ``progress``, ``rounding``) as
    :func:`layer_scores`.

    Returns:
        :class:`AttentionMap` with ``scores [B, n_tokens]``.
    """
    layers = for_model(layers, vlm.layer_kinds, vlm.name).layers
    scores, batch = _layer_scores(vlm, images, questions, layers, **options)
    return _attention_map(vlm, scores, batch, layers)


def denoise_scores(attention: AttentionMap, lam: float = DEFAULTS.lam) -> AttentionMap:
    """Paper step 3 on every token grid of the map (see :func:`vea_engine.mask.denoise`)."""
    grids = [denoise(grid, lam) for grid in attention.geometry.split(attention.scores)]
    return attention.with_scores(torch.cat([g.flatten(1) for g in grids], dim=1))


def paint_scores(attention: AttentionMap) -> torch.Tensor:
    """Token scores painted on the canvas, ``[B, H, W]``; overlapping grids are averaged."""
    geometry = attention.geometry
    H, W = geometry.canvas_hw
    total = None
    count = torch.zeros(geometry.canvas_hw, dtype=MASK_DTYPE, device=attention.scores.device)
    parts = [(p, g) for p, g in zip(geometry.parts, geometry.split(attention.scores), strict=True) if p.n_tokens]
    for part, grid in parts:
        painted = paint(grid, geometry.canvas_hw, part.box)
        total = painted if total is None else total + painted
        x0, y0, x1, y1 = part.box
        count[max(y0, 0) : min(y1, H), max(x0, 0) : min(x1, W)] += 1
    if len(parts) == 1:
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
