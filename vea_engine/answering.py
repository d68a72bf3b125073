"""Greedy answers (paper step 6) for a batch of images and questions: :func:`answer`.

Several batches of answers (the methods of one comparison) can also be decoded as one
batch after their own prefills (an opt-in: the default answers one method at a time, as the
reference code does): :func:`prefill_answers` runs each prompt's prefill
exactly as a plain answer does and keeps its cache; :func:`decode_answers` joins the
caches (each sequence right-aligned, the padding masked) and decodes all of them in one
``generate`` call. A decoding step of several sequences reads the weights once, so two
answers decode for little more than the price of one. Each prefill, and so each first
token, is the plain answer's own. The later steps compute the same terms in a batch of
other rows, which may round differently in the last bit: in float32 the token ids equal
those of plain answers on every family tested and on the benchmark model, but in half
precision a near tie between two tokens can break the other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import compat
from .config import DEFAULTS, build_prompt
from .images import images_to_uint8
from .inputs import Progress, broadcast_questions, model_inputs, shape_buckets
from .loading import VLM


class _StepCallback:
    """A transformers ``StoppingCriteria`` that reports each generated token (never stops by itself)."""

    def __init__(self, progress: Progress, total: int, done: int = 0) -> None:
        self.progress, self.total, self.step = progress, total, done

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
    batches = answer_inputs(vlm, images, questions, prompt_style, template, max_new_tokens)
    answers: list[str] = [""] * sum(len(bucket) for bucket, _ in batches)
    for bucket, inputs in batches:
        for i, text in zip(bucket, generate_answers(vlm, inputs, max_new_tokens, progress), strict=True):
            answers[i] = text
    return answers


def answer_inputs(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    prompt_style: str = "qa",
    template: str | None = None,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
) -> list[tuple[list[int], Any]]:
    """The model inputs of :func:`answer`: ``(image indices, processor outputs)`` per image size, in input order
    (same-size images go through together)."""
    check_max_new_tokens(max_new_tokens)
    arrays = images_to_uint8(images)
    questions = broadcast_questions(questions, len(arrays))
    prompts = [build_prompt(q, prompt_style, template) for q in questions]
    return [
        (bucket, model_inputs(vlm, [arrays[i] for i in bucket], [prompts[i] for i in bucket], max_new_tokens))
        for bucket in shape_buckets(arrays)
    ]


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
    output = _generate(vlm, inputs, max_new_tokens, progress)
    return _texts(vlm, output[:, inputs["input_ids"].shape[1] :])  # [B, T] new tokens


def _pad_id(vlm: VLM) -> int:
    tokenizer = vlm.processor.tokenizer
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _texts(vlm: VLM, new_tokens: torch.Tensor) -> list[str]:
    """Stripped answer strings of ``[B, T]`` new token ids."""
    return [text.strip() for text in vlm.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _generate(
    vlm: VLM, inputs: Any, max_new_tokens: int, progress: Progress | None, total: int | None = None, done: int = 0,
    **options: Any,
) -> Any:  # fmt: skip
    """Greedy ``generate``; ``progress`` sees steps ``done + 1 ..`` of ``total`` (default ``max_new_tokens``)."""
    if progress is not None:
        from transformers import StoppingCriteriaList

        callback = _StepCallback(progress, total or max_new_tokens, done)
        options["stopping_criteria"] = StoppingCriteriaList([callback])
    return vlm.model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=_pad_id(vlm),
        **options,
    )


@dataclass
class Prefilled:
    """A batch of answers after their prefill: the first token of each and the cache to decode on from.

    Attributes:
        sequences: ``[B, N + 1]`` the (left-padded) prompt ids and each answer's first token.
        attention_mask: ``[B, N]`` of the prompts.
        cache: the model's key/value cache of the ``N`` prompt positions.
        state: what the model keeps between a prefill and its decoding steps
            (:func:`~vea_engine.compat.decode_state`).
        max_new_tokens: the answers' length limit (the first token included).
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    cache: Any
    state: dict[str, torch.Tensor]
    max_new_tokens: int

    @property
    def rows(self) -> int:
        return int(self.sequences.shape[0])


@torch.inference_mode()
def prefill_answers(
    vlm: VLM, inputs: Any, max_new_tokens: int = DEFAULTS.max_new_tokens, progress: Progress | None = None
) -> Prefilled:
    """The prefill of :func:`generate_answers` (its first token), kept for :func:`decode_answers`.

    It is a ``generate`` call of one new token on the same inputs, so the prefill and the first
    token are the plain answer's own (a capture scope around it records the prefill).
    """
    check_max_new_tokens(max_new_tokens)
    # the first token is not an end token where the model's generation config asks for a minimum length
    first = min(vlm.model.generation_config.min_new_tokens or 0, 1)
    output = _generate(
        vlm, inputs, 1, progress, total=max_new_tokens, return_dict_in_generate=True, min_new_tokens=first
    )
    rows = int(output.sequences.shape[0])
    return Prefilled(output.sequences, inputs["attention_mask"], output.cache,
                     compat.decode_state(vlm.model, rows), max_new_tokens)  # fmt: skip


def decode_answers(vlm: VLM, prefilled: Sequence[Prefilled], progress: Progress | None = None) -> list[list[str]]:
    """Greedy answers of several prefills, decoded as one batch: one list of answers per prefill.

    Sequences that already ended (their first token ends the answer, or one token is the limit)
    are not decoded further. The others' caches are joined row-wise, each left-padded to the
    longest prompt, and decoding continues in one ``generate`` call up to the largest
    ``max_new_tokens``; each answer is then cut at its own limit and end token, as
    :func:`generate_answers` cuts it. The prefills are consumed.
    """
    return [_texts(vlm, tokens) for tokens in decode_tokens(vlm, prefilled, progress)]


@torch.inference_mode()
def decode_tokens(vlm: VLM, prefilled: Sequence[Prefilled], progress: Progress | None = None) -> list[torch.Tensor]:
    """The new token ids of :func:`decode_answers`: ``[B_i, T_i]`` per prefill, exactly as ``generate``
    returns them for that batch alone (ended sequences padded, ``T_i`` = steps until all ended)."""
    stops = _end_tokens(vlm)
    firsts = [p.sequences[:, -1:] for p in prefilled]  # [B_i, 1]
    kept = [
        torch.nonzero(~_ended(first[:, 0], stops), as_tuple=True)[0] if p.max_new_tokens > 1 else first.new_zeros(0)
        for p, first in zip(prefilled, firsts, strict=True)
    ]  # the rows of each prefill still to decode
    active = [i for i, rows in enumerate(kept) if rows.numel()]
    steps = list(firsts)
    if active:
        continued = _continue(vlm, [prefilled[i] for i in active], [kept[i] for i in active], progress)  # [R, T - 1]
        offset = 0
        for i in active:
            p, rows = prefilled[i], kept[i]
            more = torch.full(
                (p.rows, continued.shape[1]), _pad_id(vlm), dtype=firsts[i].dtype, device=firsts[i].device
            )
            more[rows.to(more.device)] = continued[offset : offset + rows.numel()].to(more.device)
            offset += rows.numel()
            steps[i] = torch.cat([firsts[i], more[:, : p.max_new_tokens - 1]], dim=1)
    return [_cut(tokens, stops, _pad_id(vlm)) for tokens in steps]


def _continue(
    vlm: VLM, prefilled: list[Prefilled], rows: list[torch.Tensor], progress: Progress | None
) -> torch.Tensor:
    """Decode rows ``rows[i]`` of each prefill on from their first token as one batch: ``[R, T - 1]`` new ids."""
    single = len(prefilled) == 1 and rows[0].numel() == prefilled[0].rows
    cache = prefilled[0].cache if single else compat.merge_caches([p.cache for p in prefilled], rows)
    if cache is None:  # a cache that cannot be joined: each prefill decodes on alone, every row
        parts = [
            _continue(vlm, [p], [torch.arange(p.rows)], progress)[kept] for p, kept in zip(prefilled, rows, strict=True)
        ]
        width = max(part.shape[1] for part in parts)
        return torch.cat([_pad_to(part, width, _pad_id(vlm)) for part in parts])
    length = max(p.sequences.shape[1] for p in prefilled)  # N + 1 of the longest prompt
    ids = torch.cat([_pad_to(p.sequences[kept.to(p.sequences.device)], length, _pad_id(vlm), left=True)
                     for p, kept in zip(prefilled, rows, strict=True)])  # fmt: skip
    masks = [torch.cat([p.attention_mask, p.attention_mask.new_ones(p.rows, 1)], dim=1) for p in prefilled]
    mask = torch.cat([_pad_to(m[kept.to(m.device)], length, 0, left=True) for m, kept in zip(masks, rows, strict=True)])
    compat.set_decode_state(vlm.model, [p.state for p in prefilled], rows)
    limit = max(p.max_new_tokens for p in prefilled)
    minimum = max((vlm.model.generation_config.min_new_tokens or 0) - 1, 0)
    output = _generate(vlm, {"input_ids": ids, "attention_mask": mask}, limit - 1, progress, total=limit, done=1,
                       cache=cache, min_new_tokens=minimum)  # fmt: skip
    return output[:, length:]


def _pad_to(tokens: torch.Tensor, width: int, value: int, left: bool = False) -> torch.Tensor:
    """``[B, T]`` padded with ``value`` to ``[B, width]`` (on the right, or on the left)."""
    missing = width - tokens.shape[1]
    return torch.nn.functional.pad(tokens, (missing, 0) if left else (0, missing), value=value)


def _end_tokens(vlm: VLM) -> torch.Tensor:
    """The ids that end an answer (the generation config's ``eos_token_id``), ``[E]``."""
    eos = vlm.model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return torch.tensor(eos, dtype=torch.long)


def _ended(tokens: torch.Tensor, stops: torch.Tensor) -> torch.Tensor:
    return torch.isin(tokens, stops.to(tokens.device))


def _cut(tokens: torch.Tensor, stops: torch.Tensor, pad: int) -> torch.Tensor:
    """``[B, T]`` with every token after a sequence's end replaced by ``pad``, and the steps after all ended dropped."""
    ends = _ended(tokens, stops).long()  # [B, T]
    ended = ends.cumsum(dim=1)  # ends seen up to and including each step
    after = (ended - ends) > 0  # strictly after the first end
    tokens = tokens.masked_fill(after, pad)
    finished = (ended > 0).all(dim=0)  # [T]: every sequence has ended by this step
    if finished.any():
        tokens = tokens[:, : int(torch.nonzero(finished)[0]) + 1]
    return tokens
