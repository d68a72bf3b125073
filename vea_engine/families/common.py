"""Helpers shared by the family adapters.

* :func:`size_value` reads a processor size field (dict or ``SizeDict``);
* :func:`processor_pixels_to_uint8` turns the processor's normalised
  ``pixel_values`` back into uint8 pixels, so an adapter renders its canvas with
  the processor's own resize instead of re-implementing it;
* :func:`stitch_tiles` lays row-major ``S x S`` tiles back into one image;
* :func:`processor_canvas` runs the image processor on one image and de-normalises
  its output: the canvas of every fixed-size family;
* :func:`encode_chat` encodes chat texts whose template already starts with the
  BOS token without the tokenizer adding a second one (Gemma, InternVL, ...);
* :func:`reserved_strings`, :func:`sentinel_token` and :class:`PlainTextPrompts`
  keep user text plain text: a question that writes ``<image>`` or ``<|im_start|>``
  is encoded as those characters, never as the placeholders and control tokens the
  chat template writes.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import check_rounding


def size_value(size: Any, key: str) -> int | None:
    """Read ``key`` from a processor size dict or ``SizeDict``; None if absent."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value is not None else None


def processor_pixels_to_uint8(pixels: torch.Tensor, image_processor: Any, rounding: str = "truncate") -> np.ndarray:
    """Undo the processor's rescale + normalise, as the reference code does.

    In float32: ``x * std + mean``, clamp to ``[0, 1]``, times ``1 / rescale_factor``
    (255), then cast to uint8 -- which truncates (``rounding="truncate"``, the
    reference) -- or round to the nearest level (``rounding="round"``).

    Args:
        pixels: ``[..., 3, H, W]`` normalised pixel values from ``image_processor``.
        image_processor: the processor that made them (its mean / std / rescale factor).
        rounding: one of :data:`ROUNDING_MODES`.

    Returns:
        ``[..., H, W, 3]`` uint8.
    """
    check_rounding(rounding)
    ip = image_processor
    values = pixels.detach().to("cpu", torch.float32)
    if getattr(ip, "do_normalize", True):
        mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(ip.image_std, dtype=torch.float32).view(3, 1, 1)
        values = values * std + mean
    if getattr(ip, "do_rescale", True):
        values = values.clamp(0, 1) * (1.0 / float(getattr(ip, "rescale_factor", 1 / 255)))
    values = values.clamp(0, 255)
    if rounding == "round":
        values = values.round()
    return values.to(torch.uint8).movedim(-3, -1).contiguous().numpy()


def stitch_tiles(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Row-major tiles ``[rows * cols, C, S, S]`` -> one image ``[C, rows * S, cols * S]``."""
    n, C, S, S2 = tiles.shape
    if n != rows * cols or S != S2:
        raise ValueError(f"expected {rows}x{cols} square tiles, got {tuple(tiles.shape)}")
    return tiles.reshape(rows, cols, C, S, S).permute(2, 0, 3, 1, 4).reshape(C, rows * S, cols * S)


def processor_canvas(image_processor: Any, image: np.ndarray, rounding: str = "truncate", **kwargs: Any) -> np.ndarray:
    """The image processor's own rendering of one ``[H0, W0, 3]`` uint8 image, ``[H, W, 3]`` uint8.

    For processors that return one ``[3, H, W]`` image per input (LLaVA-1.5, Gemma 3,
    PaliGemma); ``kwargs`` go to the processor call. The image is passed as PIL,
    so its channel axis is never guessed.
    """
    pixels = image_processor(images=[Image.fromarray(image)], return_tensors="pt", **kwargs)["pixel_values"][0]
    return processor_pixels_to_uint8(pixels, image_processor, rounding)


def encode_chat(processor: Any, texts: list[str], images: list, nested: bool = False) -> Any:
    """``processor(text=texts, images=images)``, left-padded, without a second BOS.

    When every chat text already starts with the tokenizer's BOS token (templates
    that write ``{{ bos_token }}``), the tokenizer is told not to add its own.
    ``nested`` passes the images as one list per text (processors that would
    otherwise read a flat list as several images of the first text); ``images``
    may also already be one list of images per text (several images per prompt).
    """
    tokenizer = processor.tokenizer
    bos = getattr(tokenizer, "bos_token", None)
    extra = {"add_special_tokens": False} if bos and all(t.startswith(bos) for t in texts) else {}
    batch = [[image] for image in images] if nested else images
    return processor(text=texts, images=batch, return_tensors="pt", padding=True, **extra)


# -- user text is plain text ----------------------------------------------------
#
# A prompt is user text. The tokenizer reads every special-token string in its input
# as that token, and the processor counts image-token strings as image placeholders:
# a question that writes "<image>" is refused (one placeholder too many) and one that
# writes "<|im_start|>" opens a chat turn. So a prompt holding such a string goes
# through the chat template and the processor as one spare special token (the
# *sentinel*, e.g. the padding token), which the processor leaves alone; then the
# sentinel's id is replaced by the prompt's plain-text ids (``split_special_tokens``)
# and the batch is re-padded. Prompts without such strings take the plain path
# untouched: their ids stay byte for byte what the reference code gets.

#: Per-token processor outputs and the value their entries take over user text and padding.
_TOKEN_FIELDS = {
    "attention_mask": (1, 0),
    "token_type_ids": (0, 0),
    "mm_token_type_ids": (0, 0),
    "labels": (-100, -100),
}


def reserved_strings(processor: Any, template_text: str = "") -> tuple[str, ...]:
    """Strings the tokenizer or the processor would read as control tokens, longest first.

    Every special added token, the tokenizer's named special tokens, the processor's
    placeholder strings (``image_token``, ``video_token``, ``boi_token``...) and any
    other added token ``template_text`` (a rendered chat) contains. Other non-special
    added tokens (PaliGemma's ``<loc0000>``) are vocabulary: a prompt may write them.
    Whitespace-only tokens are never reserved.
    """
    tokenizer = processor.tokenizer
    added = list(getattr(tokenizer, "added_tokens_decoder", {}).values())
    strings = {token.content for token in added if token.special or token.content in template_text}
    strings |= {token for token in getattr(tokenizer, "all_special_tokens", ()) if isinstance(token, str)}
    strings |= set(_placeholders(processor))
    return tuple(sorted((s for s in strings if s and not s.isspace()), key=lambda s: (-len(s), s)))


def _placeholders(processor: Any) -> list[str]:
    """The processor's own token strings (``image_token``, ``boi_token``...) that are in the vocabulary."""
    vocab = processor.tokenizer.get_vocab()
    return [v for k, v in vars(processor).items() if k.endswith("_token") and isinstance(v, str) and v in vocab]


def sentinel_token(processor: Any, template_text: str) -> str | None:
    """A spare special token to stand in for a prompt: one the processor does not expand or
    count, the template does not write and that has no strip rules. The padding token when
    it is one, else the first such added token, the unknown token last (plain text can
    yield that one). None when the tokenizer has none."""
    tokenizer = processor.tokenizer
    taken = set(_placeholders(processor))
    spare = [
        token.content
        for _, token in sorted(getattr(tokenizer, "added_tokens_decoder", {}).items())
        if token.special
        and token.content not in taken
        and token.content not in template_text
        and not (token.lstrip or token.rstrip or token.single_word or token.content.isspace())
    ]
    ranked = sorted(spare, key=lambda t: (t != tokenizer.pad_token, t == tokenizer.unk_token))  # stable
    return ranked[0] if ranked else None


@functools.lru_cache(maxsize=16)
def _pattern(strings: tuple[str, ...]) -> re.Pattern:
    """A regex matching any of ``strings`` (tried in the given order); never matches when empty."""
    return re.compile("|".join(re.escape(s) for s in strings) or "(?!)")


def encode_piece(tokenizer: Any, text: str, at_start: bool, as_text: bool) -> list[int]:
    """Ids of ``text`` as it lies in a longer chat text: at its start, or after other text.

    A piece after other text is encoded after a newline that is then dropped, so that a
    SentencePiece tokenizer adds no start-of-text prefix space (the trick transformers'
    own chat sanitiser uses). ``as_text`` encodes special-token strings as characters.
    """
    options = {"add_special_tokens": False, "split_special_tokens": as_text}
    if not at_start:
        newline = tokenizer.encode("\n", add_special_tokens=False)
        ids = tokenizer.encode("\n" + text, **options)
        if newline and ids[: len(newline)] == newline:
            return ids[len(newline) :]
    return tokenizer.encode(text, **options)


def plain_text_ids(tokenizer: Any, text: str, reserved: Sequence[str], at_start: bool = False) -> list[int]:
    """Ids of user ``text`` as plain text: a reserved string is encoded as its characters.

    Args:
        tokenizer: the processor's tokenizer.
        text: the user text.
        reserved: :func:`reserved_strings`.
        at_start: whether the text opens the chat text (else it follows other text).
    """
    ids = encode_piece(tokenizer, text, at_start, as_text=True)
    found = [tokenizer.convert_tokens_to_ids(s) for s in reserved]
    reserved_ids = {i for i in found if isinstance(i, int) and i != tokenizer.unk_token_id}
    if reserved_ids.isdisjoint(ids):
        return ids
    # A reserved added token that is not special is matched even with split_special_tokens:
    # cut each reserved string after its first character, so that no piece reads as one.
    cuts = sorted({0, len(text), *(m.start() + 1 for m in _pattern(tuple(reserved)).finditer(text))})
    ids = []
    for a, b in itertools.pairwise(cuts):
        ids += encode_piece(tokenizer, text[a:b], at_start and a == 0, as_text=True)
    if not reserved_ids.isdisjoint(ids):
        raise ValueError(
            "question: this tokenizer reads a special-token string of the question as its control token even "
            "in plain text; remove strings such as <image> from the question."
        )
    return ids


class PlainTextPrompts:
    """Prompts prepared so that the processor call keeps them plain text; :meth:`restore` its outputs.

    Attributes:
        prompts: what to render and encode: each prompt that holds a reserved string is
            replaced by the sentinel token; the others are unchanged.
    """

    def __init__(self, processor: Any, prompts: Sequence[str], reserved: Sequence[str], sentinel: str | None):
        self.tokenizer = processor.tokenizer
        self.reserved = tuple(reserved)
        pattern = _pattern(self.reserved)
        self.user_texts = {i: p for i, p in enumerate(prompts) if pattern.search(p)}  # batch row -> prompt
        if self.user_texts and sentinel is None:
            raise ValueError(
                "question: it contains special-token strings such as <image>, and this tokenizer has no spare special "
                "token to encode them as text with; remove them from the question."
            )
        self.sentinel = sentinel
        self.prompts = [sentinel if i in self.user_texts else p for i, p in enumerate(prompts)]

    def restore(self, inputs: Any) -> Any:
        """Processor outputs with each sentinel replaced by its prompt's plain-text ids, re-padded.

        Args:
            inputs: processor outputs (``return_tensors="pt"``) for :attr:`prompts`; ``input_ids`` ``[B, N]``.

        Returns:
            The same mapping type, ``input_ids`` ``[B, N']`` and the other per-token fields
            (``attention_mask``, ``token_type_ids``, ``mm_token_type_ids``, ``labels``) spliced alike.
        """
        if not self.user_texts:
            return inputs
        ids = inputs["input_ids"]  # [B, N]
        B, N = ids.shape
        fields = [
            k for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[:2] == (B, N)
        ]
        unknown = [k for k in fields if k != "input_ids" and k not in _TOKEN_FIELDS]
        if unknown:
            raise RuntimeError(
                f"the processor returns per-token fields {unknown} that VEA cannot splice; "
                "remove special-token strings such as <image> from the question."
            )
        mask = inputs["attention_mask"].bool() if "attention_mask" in inputs else ids != self.tokenizer.pad_token_id
        sentinel_id = self.tokenizer.convert_tokens_to_ids(self.sentinel)
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in fields}
        for b in range(B):
            real = mask[b].nonzero(as_tuple=True)[0]  # [n_b] positions of real tokens
            if b not in self.user_texts:
                for k in fields:
                    rows[k].append(inputs[k][b, real])
                continue
            hits = real[ids[b, real] == sentinel_id]
            if hits.numel() != 1:
                raise RuntimeError(
                    f"the processor wrote the stand-in token {self.sentinel!r} {hits.numel()} times "
                    "instead of once; remove special-token strings such as <image> from the question."
                )
            at = int(hits[0])
            user = plain_text_ids(self.tokenizer, self.user_texts[b], self.reserved, at_start=at == int(real[0]))
            user_ids = torch.tensor(user, dtype=ids.dtype)
            for k in fields:
                value = inputs[k][b]
                fill = (
                    user_ids
                    if k == "input_ids"
                    else torch.full((len(user), *value.shape[1:]), _TOKEN_FIELDS[k][0], dtype=value.dtype)
                )
                rows[k].append(torch.cat([value[real[0] : at], fill, value[at + 1 : real[-1] + 1]]))
        width = max(len(r) for r in rows["input_ids"])
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        left = getattr(self.tokenizer, "padding_side", "left") == "left"
        out = dict(inputs.items())
        for k in fields:
            value = pad_id if k == "input_ids" else _TOKEN_FIELDS[k][1]
            padded = []
            for r in rows[k]:
                pad = torch.full((width - len(r), *r.shape[1:]), value, dtype=r.dtype)
                padded.append(torch.cat([pad, r] if left else [r, pad]))
            out[k] = torch.stack(padded)
        return type(inputs)(out) if hasattr(inputs, "data") else out
