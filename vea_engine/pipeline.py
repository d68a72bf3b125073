"""The whole method in one call: attribute, build the evidence map, highlight, answer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .align import align_mask
from .attribution import AttentionMap
from .config import DEFAULTS
from .inputs import Progress
from .layers import LayerSelection
from .loading import VLM
from .methods import METHODS, MethodRunner, check_methods
from .signals import check_signal

log = logging.getLogger(__name__)

__all__ = ["VEAResult", "align_mask", "run_vea"]


@dataclass(frozen=True)
class VEAResult:
    """Outputs of :func:`run_vea` for a batch.

    Attributes:
        answers: ``method -> one answer per image`` for the requested methods.
        evidence: ``[B, H, W]`` evidence map in [0, 1] on the answering model's canvas.
        highlighted: ``[B, H, W, 3]`` float in [0, 1]: the image the ``vea`` answer was
            given (8-bit levels / 255).
        attention: the attribution (on the mask model's canvas).
        layers: the layer selection used.
    """

    answers: dict[str, list[str]]
    evidence: torch.Tensor
    highlighted: torch.Tensor
    attention: AttentionMap
    layers: LayerSelection


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
    rounding: str = "truncate",
    signal: str = "attention",
    sinks: bool = False,
    joint_decode: bool = False,
) -> VEAResult:
    """VEA end to end (paper steps 2-6) on a batch of same-size images.

    Args:
        vlm: the model that answers.
        images: ``[B, H, W, C]`` in [0, 1] or a list of same-size images.
        questions: one question, or one per image.
        layers: a :class:`LayerSelection`, indices, a mode name, or None (preset /
            fallback of the *mask* model).
        lam, sigma, alpha: paper hyper-parameters (denoise, smooth, highlight).
        methods: names from :data:`vea_engine.methods.METHODS`: ``base`` (qa prompt,
            original image), ``inst`` (vea prompt, original image), ``vea`` (vea prompt,
            highlighted image) and the ablations.
        apply_denoise, apply_smooth, hint: switches of the ``vea`` answer and of the
            returned evidence and highlighted image (``hint=False`` answers the
            highlighted image with the ``qa`` prompt).
        delegate: a model that makes the mask for ``vlm`` (default: ``vlm`` itself).
        rounding: ``truncate`` (the reference: canvases and the highlighted image are
            cast to uint8 by truncation) or ``round`` (to the nearest level).
        signal: how the image tokens are scored for the ``vea`` answer and the returned
            evidence: one of :data:`~vea_engine.signals.SIGNALS` (``attention``: the paper's).
        sinks: exclude visual attention sinks before normalising (:mod:`vea_engine.sinks`).
        joint_decode: False (the default, as the reference code) answers each method alone,
            exactly as :func:`~vea_engine.answering.answer` does. True decodes the answers of two
            methods at a time as one batch after their own prefills: faster, but the batch can round
            a near tie the other way in half precision (see :mod:`vea_engine.answering`).

    Returns:
        :class:`VEAResult`.
    """
    wanted = check_methods(methods, "run_vea")
    check_signal(signal, "run_vea")
    # the highlighted image shown: ``vea`` with the ablation switches and the signal of this call
    shown = replace(
        METHODS["vea"], denoise=apply_denoise, smooth=apply_smooth, prompt="vea" if hint else "qa", signal=signal
    )
    expected = [shown if m.name == "vea" else m for m in wanted]
    runner = MethodRunner(vlm, images, questions, layers, lam, sigma, alpha, max_new_tokens, delegate or vlm, progress,
                          rounding, expected, sinks, joint_decode)  # fmt: skip
    evidence, highlighted = runner.highlighted(shown)
    answers = runner.answers(expected)  # by name, in the order asked
    return VEAResult(
        answers, evidence, highlighted.float() / 255.0, runner.attention("selected", signal), runner.selection
    )
