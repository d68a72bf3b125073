"""Relative attention (ViCrop's rel-att, "MLLMs Know Where to Look", ICLR 2025).

The question's attention map divided by the map of a generic prompt, "Write a
general description of the image.": attention a model pays to an image token
whatever it is asked (salient objects, sinks, borders) cancels out, and what the
*question* adds stands out.

Both prompts run in **one** forward pass: the batch holds every image twice, first
with its question, then with the generic question, in the same prompt style (the
chat template and prompt text are the question's with only the question replaced).
The two prompts differ in length; the processor left-pads the shorter one and
capture applies the model's padding mask, so each row equals the row of a pass of
its own (tested within 1e-6).

Division is epsilon-guarded: each image's generic scores are floored at
``epsilon * mean(generic scores of the image)`` (and never below
:data:`ABSOLUTE_FLOOR`), then ``ratio = question / floored generic``, computed in
float64 and returned in float32. With the default ``epsilon = 1e-6`` the floor acts
only on tokens the generic prompt practically ignores (a million times below its
average); a token neither prompt can see (e.g. behind a sliding window in every
selected layer) gets 0 / floor = 0. The absolute floor (1e-30) stays far from
float32 denormals (below 1.2e-38) and bounds the ratio of scores <= 1 by 1e30, finite
in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .attribution import AttentionMap, extract_attention
from .config import MASK_DTYPE
from .images import images_to_uint8
from .inputs import broadcast_questions
from .layers import LayerSelection
from .loading import VLM

#: The generic prompt of ViCrop's relative attention.
GENERIC_QUESTION = "Write a general description of the image."
#: Relative floor of the generic scores (times each image's mean generic score).
RELATT_EPSILON = 1e-6
#: Absolute floor of the denominator (float32-normal; keeps ratios of scores <= 1 finite).
ABSOLUTE_FLOOR = 1e-30


def relative_scores(
    question_scores: torch.Tensor, generic_scores: torch.Tensor, epsilon: float = RELATT_EPSILON
) -> torch.Tensor:
    """``question / max(generic, floor)`` per token, the floor per image (see module docstring).

    Args:
        question_scores: ``[B, n]`` non-negative scores for the question.
        generic_scores: ``[B, n]`` non-negative scores for the generic prompt.
        epsilon: relative floor, > 0.

    Returns:
        ``[B, n]`` float32, finite.
    """
    if question_scores.shape != generic_scores.shape or question_scores.ndim != 2:
        raise ValueError(
            f"relative_scores: question scores {tuple(question_scores.shape)} and generic scores "
            f"{tuple(generic_scores.shape)} must both be [B, n]."
        )
    if not (isinstance(epsilon, (int, float)) and 0 < epsilon < 1):
        raise ValueError(f"relative_scores: epsilon = {epsilon!r} must be in (0, 1); the default is {RELATT_EPSILON}.")
    q = question_scores.to(torch.float64)  # [B, n]
    g = generic_scores.to(torch.float64)  # [B, n]
    floor = (epsilon * g.mean(dim=1, keepdim=True)).clamp_min(ABSOLUTE_FLOOR)  # [B, 1]
    return (q / torch.maximum(g, floor)).to(MASK_DTYPE)


def paired_attention(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: LayerSelection | Sequence[int],
    generic: str = GENERIC_QUESTION,
    **options: Any,
) -> tuple[AttentionMap, AttentionMap]:
    """The question's and the generic prompt's attention maps of each image, from one forward pass.

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1], or a list of same-size images.
        questions: one question, or one per image.
        layers: decoder layers to average.
        generic: the question-independent prompt's question.
        options: as :func:`~vea_engine.attribution.extract_attention` (``prompt_style``,
            ``template``, ``early_exit``, ``progress``, ``rounding``).

    Returns:
        ``(question map, generic map)``, each with ``scores [B, n_tokens]`` and the same
        canvas and geometry.
    """
    originals = images_to_uint8(images)  # B x [H, W, 3] uint8
    questions = broadcast_questions(questions, len(originals))
    batch = len(originals)
    both = extract_attention(vlm, originals + originals, questions + [generic] * batch, layers, **options)
    # both halves render the same images, so each has the images' own canvases
    return both.rows(slice(None, batch), questions), both.rows(slice(batch, None), (generic,) * batch)


def relative_attention(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: LayerSelection | Sequence[int],
    epsilon: float = RELATT_EPSILON,
    generic: str = GENERIC_QUESTION,
    **options: Any,
) -> AttentionMap:
    """ViCrop's relative attention: the question's map over the generic prompt's, per image token.

    Arguments as :func:`paired_attention`; ``epsilon`` as :func:`relative_scores`.

    Returns:
        :class:`~vea_engine.attribution.AttentionMap` with ``scores [B, n_tokens]`` the ratios
        (float32, >= 0) and the questions' canvas, geometry and layers.
    """
    question_map, generic_map = paired_attention(vlm, images, questions, layers, generic, **options)
    return question_map.with_scores(relative_scores(question_map.scores, generic_map.scores, epsilon))
