"""What goes into the model: questions per image, canvases, processor outputs, progress.

One pass of the model over a batch is prepared here, once, for every caller
(attribution, answering, profiling):

* :func:`broadcast_questions` -- one question per image;
* :func:`render_canvases` -- each image's model-input rendering with its frame;
* :func:`model_inputs` -- processor outputs on the model's device, checked against
  the model's context length (:func:`check_context`);
* :func:`encode_batch` -- all of it for one prompt style, plus each image's token
  layout on its canvas: the attribution pass encodes the *original* images with
  the plain QA prompt, byte for byte the inputs of the base answer;
* :func:`layer_progress` -- a per-decoder-layer progress callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import build_prompt
from .decoder import text_decoder_layers
from .geometry import Canvas, ImageGeometry
from .images import images_to_uint8
from .loading import VLM

#: ``progress(done, total)``; may raise to cancel (e.g. an interruption).
Progress = Callable[[int, int], None]


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


def shape_buckets(images: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of ``images`` grouped by shape (same-size images share a batch), in order of first
    appearance, each group in input order: ``[a(4x4), b(2x2), c(4x4)] -> [[0, 2], [1]]``."""
    buckets: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        buckets.setdefault(tuple(image.shape), []).append(i)
    return list(buckets.values())


def _first_fit(adapter: Any, hw: tuple[int, int], axis: int, sides: range) -> int | None:
    """The first side in ``sides`` along ``axis`` (0: H, 1: W) at which the adapter takes the image (bisected:
    the sides run from the image's own towards a square, where every limit is met); None when none does."""
    low, high = 0, len(sides)
    while low < high:
        middle = (low + high) // 2
        size = list(hw)
        size[axis] = sides[middle]
        if adapter.image_size_problem(tuple(size)) is None:
            high = middle
        else:
            low = middle + 1
    return sides[low] if low < len(sides) else None


def check_image_sizes(adapter: Any, images: Sequence[Any], name: str = "image") -> None:
    """Raise a ValueError for an image the model's processor cannot take (its aspect or size limits,
    :meth:`~vea_engine.families.base.FamilyAdapter.image_size_problem`), before the processor raises its
    own text: the message names the image's size, the limit and the fix (a padded and a cropped size).

    Args:
        adapter: the model's family adapter (``vlm.adapter``).
        images: ``[H, W, 3]`` arrays or ``[B, H, W, C]`` tensors (anything with ``.shape``), or ``(H, W)`` sizes.
        name: what to call the input in the message (a node adds its own name: ``"VEA Zoom: image"``).
    """
    sizes = []
    for image in images:
        shape = tuple(image) if isinstance(image, tuple) else tuple(image.shape)
        sizes += [shape[1:3]] * shape[0] if len(shape) == 4 else [shape[:2]]
    for h, w in dict.fromkeys((int(h), int(w)) for h, w in sizes):
        problem = adapter.image_size_problem((h, w))
        if problem is None:
            continue
        short = 0 if h < w else 1  # the axis of the short side
        long_side, short_side = max(h, w), min(h, w)
        padded = _first_fit(adapter, (h, w), short, range(short_side, long_side + 1))
        cropped = _first_fit(adapter, (h, w), 1 - short, range(long_side, short_side - 1, -1))
        fixes = []
        for side, axis in ((padded, short), (cropped, 1 - short)):
            if side is not None:
                size = [h, w]
                size[axis] = side
                fixes.append(f"{'pad' if side > (h, w)[axis] else 'crop'} it to {size[1]}x{size[0]}")
        fix = " or ".join(fixes) if fixes else "resize it"
        raise ValueError(
            f"{name}: the image is {w}x{h} (W x H), an aspect ratio of {long_side / short_side:.4g}:1, but "
            f"{problem}; {fix} (W x H)."
        )


def render_canvases(vlm: VLM, images: Any, rounding: str = "truncate") -> list[Canvas]:
    """Model-input renderings of a batch, one :class:`~vea_engine.geometry.Canvas` per image."""
    originals = images_to_uint8(images)
    check_image_sizes(vlm.adapter, originals)
    return [vlm.adapter.render(image, rounding) for image in originals]


#: ``tokenizer.model_max_length`` at or above this is transformers' "no limit" placeholder.
_NO_TOKENIZER_LIMIT = 10**9
_TOKENIZER_SOURCE = "the tokenizer's model_max_length"


def context_limit(vlm: VLM) -> tuple[int, str] | None:
    """The model's context length in tokens and where it comes from; None when nothing says.

    The smaller of the text decoder's ``max_position_embeddings`` and the tokenizer's
    ``model_max_length`` (unless that is transformers' "no limit" placeholder).
    """
    config = vlm.model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limits = []
    positions = getattr(text_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append((positions, "max_position_embeddings"))
    tokenizer_limit = getattr(getattr(vlm.processor, "tokenizer", None), "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _NO_TOKENIZER_LIMIT:
        limits.append((tokenizer_limit, _TOKENIZER_SOURCE))
    return min(limits, key=lambda limit: limit[0]) if limits else None  # a tie names the model config


def check_context(vlm: VLM, n_prompt: int, new_tokens: int = 0) -> None:
    """Raise a ValueError when ``n_prompt`` prompt tokens plus ``new_tokens`` to generate exceed
    the model's context (:func:`context_limit`): the model would run silently past its positions."""
    limit = context_limit(vlm)
    if limit is None or n_prompt + new_tokens <= limit[0]:
        return
    generated = f" + {new_tokens} new tokens" if new_tokens else ""
    fixes = ["shorten the question"]
    if vlm.adapter.pixel_budget:
        fixes.append("lower the resolution setting (fewer image tokens)")
    if limit[1] == _TOKENIZER_SOURCE:
        fixes.append("raise model_max_length in tokenizer_config.json if the model allows more")
    fix = ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]
    raise ValueError(
        f"question: the prompt is {n_prompt} tokens{generated}, more than the model's context of {limit[0]} "
        f"tokens ({limit[1]}); {fix}."
    )


def model_inputs(vlm: VLM, images: list[np.ndarray], prompts: list[str], new_tokens: int = 0) -> Any:
    """Processor outputs for ``[H, W, 3]`` uint8 images + prompts, on the model's device
    (floating inputs in the model's dtype).

    ``new_tokens`` (answers: ``max_new_tokens``) counts towards the context check: a
    ValueError when the longest prompt plus that many tokens exceeds the model's context.
    """
    check_image_sizes(vlm.adapter, images)
    pil = [Image.fromarray(image) for image in images]
    inputs = vlm.adapter.encode(pil, prompts)
    check_context(vlm, int(inputs["input_ids"].shape[-1]), new_tokens)  # [B, N]: N = the longest prompt
    return on_model(vlm, inputs)


def on_model(vlm: VLM, inputs: Any) -> Any:
    """Processor outputs on the model's device, floating inputs in the model's dtype."""
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(vlm.device)
            if value.is_floating_point():
                value = value.to(vlm.dtype)
        moved[key] = value
    return type(inputs)(moved) if hasattr(inputs, "data") else moved


@dataclass(frozen=True)
class EncodedBatch:
    """A batch of same-size images encoded for one forward pass.

    Attributes:
        inputs: processor outputs of the original images (on the model's device).
        canvases: each image's canvas and frame.
        geometry: the token layout on the canvas with its frame, shared by the batch.
        positions: each sequence's image-token positions in ``input_ids`` (``n_tokens`` each).
        questions: one per image.
    """

    inputs: Any
    canvases: tuple[Canvas, ...]
    geometry: ImageGeometry
    positions: tuple[torch.Tensor, ...]
    questions: tuple[str, ...]


def encode_batch(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    prompt_style: str = "qa",
    template: str | None = None,
    rounding: str = "truncate",
) -> EncodedBatch:
    """Encode same-size original images with their prompts and lay their tokens on their canvases.

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1], or a list of same-size images.
        questions: one question, or one per image.
        prompt_style, template: see :func:`vea_engine.config.build_prompt`.
        rounding: how de-normalised processor pixels become canvas uint8.

    Returns:
        An :class:`EncodedBatch`.
    """
    originals = images_to_uint8(images)
    if len({o.shape for o in originals}) != 1:
        raise ValueError("images in one batch must share a size (their token layouts differ); split the batch.")
    questions = broadcast_questions(questions, len(originals))
    prompts = [build_prompt(q, prompt_style, template) for q in questions]
    check_image_sizes(vlm.adapter, originals[:1])  # one size
    canvases = [vlm.adapter.render(o, rounding) for o in originals]
    inputs = model_inputs(vlm, originals, prompts)
    layouts = [vlm.adapter.token_layout(inputs, i, c.frame) for i, c in enumerate(canvases)]
    geometries = {ImageGeometry(layout, c.frame) for layout, c in zip(layouts, canvases, strict=True)}
    if len(geometries) != 1:
        raise ValueError("images in one batch must share a size (their token layouts differ); split the batch.")
    geometry = geometries.pop()
    positions = vlm.adapter.image_token_positions(inputs["input_ids"], layouts)
    for i, pos in enumerate(positions):
        if pos.numel() != geometry.n_tokens:
            raise RuntimeError(
                f"{vlm.adapter.family}: image {i} has {pos.numel()} image tokens in the prompt but its token layout "
                f"predicts {geometry.n_tokens}; the adapter does not match this processor configuration."
            )
    return EncodedBatch(inputs, tuple(canvases), geometry, tuple(positions), tuple(questions))


@contextmanager
def layer_progress(model: Any, progress: Progress | None, total_layers: int | None = None) -> Iterator[None]:
    """Call ``progress(i + 1, total)`` as each text decoder layer starts (hooks removed on exit)."""
    if progress is None:
        yield
        return
    modules = text_decoder_layers(model)  # every layer, softmax attention or not
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
