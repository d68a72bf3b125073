"""Paper defaults, prompts and pre-profiled layers (VEA, arXiv 2510.17771).

Everything the method fixes by default lives here, in one place, so that the
engine, the CLI and the ComfyUI nodes agree. Our additions are opt-in and never
change these values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: dtype of every attention score, evidence map and mask the engine produces.
MASK_DTYPE = torch.float32

#: The paper's prompt prefix, byte for byte as the reference code writes it: the
#: abstention answer stands in typographic quotes (U+201C, U+201D).
QA_PREFIX = (
    "Directly answer the question based on the image, no explanation is needed. "
    "If the image does not contain any relevant evidence, output \u201cI cannot answer based on the given image.\u201d "
)
VEA_HINT = "Only use words from the picture, especially those in the highlighted region, to answer the question. "

#: Prompt styles. ``custom`` takes a user template containing ``{question}``.
PROMPT_STYLES = ("qa", "vea", "custom")

#: How float pixels become 8-bit levels: ``truncate`` (the reference code's cast, the
#: default) or ``round`` (to the nearest level; an opt-in).
ROUNDING_MODES = ("truncate", "round")


def check_rounding(rounding: str, who: str = "") -> str:
    """``rounding`` if it is one of :data:`ROUNDING_MODES`, else a ValueError saying what to pass."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(
            f"{who + ': ' if who else ''}rounding must be one of {ROUNDING_MODES}, got {rounding!r}; use 'truncate' "
            "(the reference code's uint8 cast, the default) or 'round' (nearest, ties to even)."
        )
    return rounding


#: The reference code loads every processor with ``max_pixels = 512 * 512``.
PAPER_MAX_PIXELS = 512 * 512

#: Input resolution choices (besides a pixel count): ``paper`` caps processors that
#: take a pixel budget at :data:`PAPER_MAX_PIXELS` (the default); ``checkpoint``
#: keeps the checkpoint's own limits.
RESOLUTION_MODES = ("paper", "checkpoint")


@dataclass(frozen=True)
class VEADefaults:
    """The paper's hyper-parameters (reference code defaults)."""

    lam: float = 10.0  # denoise spike threshold
    sigma: float = 0.5  # Gaussian sigma: <= 1 relative to the shorter side, > 1 pixels, 0 off
    alpha: float = 0.5  # brightness floor of non-evidence pixels
    max_new_tokens: int = 50  # greedy answer length
    top_layer_fraction: float = 0.10  # profiling keeps ceil(10% of layers), at least one


DEFAULTS = VEADefaults()

#: Pre-profiled visual grounding layers (0-based decoder indices), from the paper.
PRESET_LAYERS: dict[str, tuple[int, ...]] = {
    "llava-hf/llava-1.5-7b-hf": (14, 15, 17, 19),
    "llava-hf/llava-1.5-13b-hf": (13, 14, 15, 16),
    "Qwen/Qwen2.5-VL-7B-Instruct": (18, 22, 24),
    "Qwen/Qwen2.5-VL-32B-Instruct": (49, 50, 51, 52, 53, 55, 56),
    "google/gemma-3-4b-it": (17, 19, 21, 23),
    "google/gemma-3-27b-it": (35, 37, 40, 41, 47, 53, 58),
}

#: Decoder depth of each preset checkpoint; a preset is only used on a model of that depth.
PRESET_NUM_LAYERS: dict[str, int] = {
    "llava-hf/llava-1.5-7b-hf": 32,
    "llava-hf/llava-1.5-13b-hf": 40,
    "Qwen/Qwen2.5-VL-7B-Instruct": 28,
    "Qwen/Qwen2.5-VL-32B-Instruct": 64,
    "google/gemma-3-4b-it": 34,
    "google/gemma-3-27b-it": 62,
}


def build_prompt(question: str, style: str = "qa", template: str | None = None) -> str:
    """The text prompt for one question.

    Args:
        question: the user's question; must contain a non-space character. It is
            inserted as given (not stripped), as the reference code does.
        style: ``qa`` (prefix + question), ``vea`` (prefix + highlight hint + question)
            or ``custom`` (``template.format(question=question)``).
        template: required for ``custom``; must contain ``{question}``.

    Returns:
        The prompt text placed after the image in the chat template.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}; type the question to ask.")
    if style == "qa":
        return f"{QA_PREFIX}Question: {question}"
    if style == "vea":
        return f"{QA_PREFIX}{VEA_HINT}Question: {question}"
    if style == "custom":
        if not template or "{question}" not in template:
            raise ValueError(
                f"prompt style 'custom' needs a template containing '{{question}}', got {template!r}; "
                "e.g. 'Answer briefly. Question: {question}'."
            )
        return template.replace("{question}", question)
    raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}.")
