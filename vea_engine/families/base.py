"""The family adapter interface: everything that differs between VLM families.

An adapter answers, for one loaded processor/config:

* how to build the chat text for one image + prompt (:meth:`FamilyAdapter.chat_text`)
  and encode it, the prompt always as plain text (:meth:`FamilyAdapter.encode`);
* what the model-input rendering of an image is, and where it lies in the
  original (:meth:`FamilyAdapter.render`, a :class:`~vea_engine.geometry.Canvas`)
  -- VEA paints and highlights on it;
* which ``input_ids`` are this image's tokens and how they lie on the canvas as
  grid cells (:meth:`FamilyAdapter.token_layout`, a
  :class:`~vea_engine.geometry.TokenLayout`), from the processor outputs of the
  *original* image -- the attribution pass sees exactly what the base answer sees.

Adding a family = one subclass registered in :mod:`vea_engine.families`;
nothing else in the engine changes. The canvas must round-trip: fed back to the
processor, it is laid out as the same token grids.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ..geometry import Canvas, Frame, TokenLayout
from .common import PlainTextPrompts, encode_chat, reserved_strings, sentinel_token


class FamilyAdapter:
    """Base class; subclasses set ``family``/``model_types`` and implement the canvas and token layout."""

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    #: Chat template used when a checkpoint's processor ships none.
    fallback_template: ClassVar[str] = "{image}\n{prompt}"
    #: Keyword variables the checkpoint's chat template is rendered with (e.g. ``{"enable_thinking": False}``
    #: for a template that otherwise opens the answer with a reasoning block).
    chat_template_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, processor: Any, config: Any) -> None:
        self.processor = processor
        self.config = config

    @classmethod
    def config_json(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's ``config.json`` as this family's transformers config class reads it.

        The default is the file as it is. A family overrides this where a released file is
        written in a form the installed transformers no longer reads (and would silently replace
        by defaults).
        """
        return data

    @property
    def _image_processor(self) -> Any:
        """The processor's image processor (sizes, patch geometry, normalisation)."""
        return self.processor.image_processor

    # -- tokens -------------------------------------------------------------
    @property
    def image_token_id(self) -> int:
        """Id of the placeholder token that image features replace."""
        for source in (self.config, self.processor, getattr(self.processor, "tokenizer", None)):
            for attr in ("image_token_id", "image_token_index"):
                value = getattr(source, attr, None)
                if isinstance(value, int) and value >= 0:
                    return value
        token = getattr(self.processor, "image_token", None)
        if isinstance(token, str):
            return int(self.processor.tokenizer.convert_tokens_to_ids(token))
        raise ValueError(f"{self.family}: cannot find the image token id in the config or processor.")

    def image_token_positions(
        self, input_ids: torch.Tensor, layouts: Sequence[TokenLayout] | None = None
    ) -> list[torch.Tensor]:
        """Positions of the image tokens of each sequence: ``[B, N] -> B x [n_b]`` (sorted).

        ``layouts`` (one per sequence, from :meth:`token_layout`) lets a family whose
        placeholders include non-grid tokens (e.g. row newlines) find which to drop.
        """
        hits = input_ids == self.image_token_id  # [B, N]
        return [row.nonzero(as_tuple=True)[0] for row in hits]

    # -- prompting ----------------------------------------------------------
    def chat_text(self, prompt: str, n_images: int = 1) -> str:
        """The full model text for ``n_images`` images followed by ``prompt``, ready for generation."""
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, **self.chat_template_options
            )
        image = getattr(self.processor, "image_token", "<image>")
        return self.fallback_template.format(image=image * n_images, prompt=prompt)

    def encode(self, images: list[Image.Image], prompts: list[str]) -> Any:
        """Processor outputs (``BatchFeature``) for images + prompts, left-padded.

        Each prompt is plain text: see :meth:`plain_user_text`. An override must keep
        that: render ``plain_user_text(prompts).prompts`` and pass the processor's
        outputs through its ``restore``.
        """
        plain = self.plain_user_text(prompts)
        texts = [self.chat_text(p) for p in plain.prompts]
        if self.nested_images:
            return plain.restore(encode_chat(self.processor, texts, images, nested=True))
        return plain.restore(self.processor(text=texts, images=images, return_tensors="pt", padding=True))

    #: Whether :meth:`encode` gives the processor one list of images per prompt (without a second BOS
    #: where the chat template writes it): processors that read a flat list as several images of the
    #: first prompt (Gemma 3/4, Idefics3, LLaVA-OneVision, Mistral 3, LFM2-VL).
    nested_images: ClassVar[bool] = False

    #: Whether one prompt may hold several images (:meth:`encode_multi`): the families whose processor
    #: and model lay out each image of a prompt on its own.
    multi_image: ClassVar[bool] = False

    def encode_multi(self, images: list[list[Image.Image]], prompts: list[str]) -> Any:
        """Processor outputs for prompts that each hold several images, left-padded.

        Args:
            images: per prompt, its images in order (``[[original, crop], ...]``); they stand
                before the prompt text in the user turn, one placeholder each.
            prompts: one plain-text prompt per entry of ``images`` (kept plain text, see
                :meth:`plain_user_text`).

        Raises:
            ValueError: the family takes one image per prompt (``multi_image`` is False).
        """
        if not self.multi_image:
            raise ValueError(f"{self.family}: its processor takes one image per prompt; answer on one image at a time.")
        if len(images) != len(prompts):
            raise ValueError(f"{self.family}: {len(images)} image lists for {len(prompts)} prompts; give one each.")
        plain = self.plain_user_text(prompts)  # prompts stay plain text
        texts = [self.chat_text(p, len(group)) for p, group in zip(plain.prompts, images, strict=True)]
        return plain.restore(encode_chat(self.processor, texts, [list(group) for group in images]))

    @property
    def input_side(self) -> int:
        """The side in pixels of the square the vision tower sees at once (a tile, or the fixed input):
        what an image region must measure to be seen at the model's native resolution."""
        raise NotImplementedError

    @functools.cached_property
    def _template_text(self) -> str:
        """A rendered chat (the template's own tokens, for :func:`~vea_engine.families.common.reserved_strings`)."""
        return self.chat_text("?")

    @functools.cached_property
    def reserved(self) -> tuple[str, ...]:
        """Strings the tokenizer or the processor read as control tokens or image placeholders."""
        return reserved_strings(self.processor, self._template_text)

    @functools.cached_property
    def _sentinel(self) -> str | None:
        """The spare special token a prompt stands in as (:func:`~vea_engine.families.common.sentinel_token`)."""
        return sentinel_token(self.processor, self._template_text)

    def plain_user_text(self, prompts: Sequence[str]) -> PlainTextPrompts:
        """The prompts prepared so that :meth:`encode` keeps them plain text.

        A prompt is user text as a whole (prefix, question, custom template). One that
        writes a special-token string (``<image>``, ``<|im_start|>``, ``<bos>``...) is
        encoded as those characters, as with ``split_special_tokens``: never as an image
        placeholder or a chat turn. Prompts without such strings are left alone, so their
        ids are exactly the plain processor's. Use: render ``.prompts``, run the processor,
        pass its outputs through ``.restore``.
        """
        return PlainTextPrompts(self.processor, prompts, self.reserved, self._sentinel)

    # -- image size limits ----------------------------------------------------
    def image_size_problem(self, hw: tuple[int, int]) -> str | None:
        """What the processor cannot take about an image of ``(H, W)`` pixels, in words that name its
        limit (e.g. ``"Qwen-VL's processor takes aspect ratios up to 200:1"``); None when it takes it.

        The processors enforce these limits deep inside with their own text; callers check
        first (:func:`~vea_engine.inputs.check_image_sizes`) and add the image's size and the fix.
        """
        return None

    # -- canvas and token layout ----------------------------------------------
    #: Whether the processor takes a pixel budget (``max_pixels``); see :meth:`set_max_pixels`.
    pixel_budget: ClassVar[bool] = False

    def set_max_pixels(self, max_pixels: int) -> None:
        """Cap the processor's input resolution at ``max_pixels`` (families with a pixel budget only)."""
        raise ValueError(f"{self.family}: the processor takes no pixel budget (its input size is fixed).")

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        """Model-input rendering of an RGB image, with its frame in the original.

        Args:
            image: ``[H0, W0, 3]`` uint8.
            rounding: how de-normalised processor pixels become uint8
                (:data:`~vea_engine.families.common.ROUNDING_MODES`).

        Returns:
            A :class:`~vea_engine.geometry.Canvas`. Fed back to the processor, the
            canvas is laid out as the same token grids (it is not resized again).
        """
        raise NotImplementedError

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        """Token grids of batch item ``index`` of ``inputs`` on the canvas of ``frame``.

        Args:
            inputs: processor outputs (:meth:`encode`) of the original images.
            index: which image of the batch.
            frame: that image's canvas frame (from :meth:`render`).
        """
        raise NotImplementedError
