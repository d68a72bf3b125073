"""Greedy answers (paper step 6) for a batch of images and questions: :func:`answer`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .config import DEFAULTS, build_prompt
from .images import images_to_uint8
from .inputs import Progress, broadcast_questions, model_inputs, shape_buckets
from .loading import VLM


class _StepCallback:
    """A transformers ``StoppingCriteria`` that reports each generated token (never stops by itself)."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.step = progress, total, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.step += 1
        self.progress(min(self.step, self.total), self.total)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def answer(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    prompt_style: str = "qa",
    template: str | None = None,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    progress: Progress | None = None,
) -> list[str]:
    """Greedy-decode one answer per image.

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1] or a list of images (any size each).
        questions: one question for all images, or one per image.
        prompt_style: ``qa``, ``vea`` (adds the highlight hint) or ``custom`` (``template``).
        max_new_tokens: answer length limit (paper: 50).
        progress: called after each generated token; may raise to cancel.

    Returns:
        One stripped answer string per image, in order.

    Raises:
        ValueError: a prompt plus ``max_new_tokens`` exceeds the model's context
            (:func:`~vea_engine.inputs.check_context`), before anything runs on the model.
    """
    check_max_new_tokens(max_new_tokens)
    arrays = images_to_uint8(images)
    questions = broadcast_questions(questions, len(arrays))
    prompts = [build_prompt(q, prompt_style, template) for q in questions]
    answers: list[str] = [""] * len(arrays)
    # One generate call per image size: same-size images go through together, in input order.
    for bucket in shape_buckets(arrays):
        inputs = model_inputs(vlm, [arrays[i] for i in bucket], [prompts[i] for i in bucket], max_new_tokens)
        for i, text in zip(bucket, generate_answers(vlm, inputs, max_new_tokens, progress), strict=True):
            answers[i] = text
    return answers


def check_max_new_tokens(max_new_tokens: Any) -> None:
    """Raise a ValueError unless ``max_new_tokens`` is a positive integer."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")


def generate_answers(
    vlm: VLM, inputs: Any, max_new_tokens: int = DEFAULTS.max_new_tokens, progress: Progress | None = None
) -> list[str]:
    """Greedy answers for encoded inputs (:func:`~vea_engine.inputs.model_inputs`): one ``generate`` call.

    Args:
        vlm: a loaded model.
        inputs: processor outputs on the model's device, ``input_ids [B, N]`` left-padded.
        max_new_tokens: answer length limit.
        progress: called after each generated token; may raise to cancel.

    Returns:
        One stripped answer per sequence, in order.
    """
    extra = {}
    if progress is not None:
        from transformers import StoppingCriteriaList

        extra["stopping_criteria"] = StoppingCriteriaList([_StepCallback(progress, max_new_tokens)])
    tokenizer = vlm.processor.tokenizer
    output = vlm.model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        **extra,
    )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]  # [B, T]
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
