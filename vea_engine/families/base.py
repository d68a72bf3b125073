"""The family adapter interface: everything that differs between VLM families.

An adapter answers, for one loaded processor/config:

* how to build the chat text for one image + prompt (:meth:`FamilyAdapter.chat_text`);
* what the model-input rendering of an image is, and where it lies in the
  original (:meth:`FamilyAdapter.render`) -- VEA paints and highlights on it;
* which ``input_ids`` are this image's tokens and how they map to grid cells
  and canvas pixel boxes (:meth:`FamilyAdapter.geometry`).

Adding a family = one subclass registered in :mod:`vea_engine.families`;
nothing else in the engine changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ..geometry import Box, ImageGeometry


def size_value(size: Any, key: str) -> int | None:
    """Read ``key`` from a processor size dict or ``SizeDict``; None if absent."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value is not None else None


class FamilyAdapter:
    """Base class; subclasses set ``family``/``model_types`` and implement the geometry."""

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    #: Chat template used when a checkpoint's processor ships none.
    fallback_template: ClassVar[str] = "{image}\n{prompt}"

    def __init__(self, processor: Any, config: Any) -> None:
        self.processor = processor
        self.config = config

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
        self, input_ids: torch.Tensor, geometries: Sequence[ImageGeometry] | None = None
    ) -> list[torch.Tensor]:
        """Positions of the image tokens of each sequence: ``[B, N] -> B x [n_b]`` (sorted).

        ``geometries`` (one per sequence, from :meth:`geometry`) lets a family whose
        placeholders include non-grid tokens (e.g. row newlines) find which to drop.
        """
        hits = input_ids == self.image_token_id  # [B, N]
        return [row.nonzero(as_tuple=True)[0] for row in hits]

    # -- prompting ----------------------------------------------------------
    def chat_text(self, prompt: str) -> str:
        """The full model text for one image followed by ``prompt``, ready for generation."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image = getattr(self.processor, "image_token", "<image>")
        return self.fallback_template.format(image=image, prompt=prompt)

    def encode(self, images: list[Image.Image], prompts: list[str]) -> Any:
        """Processor outputs (``BatchFeature``) for images + prompts, left-padded."""
        texts = [self.chat_text(p) for p in prompts]
        return self.processor(text=texts, images=images, return_tensors="pt", padding=True)

    # -- geometry -----------------------------------------------------------
    def render(self, image: np.ndarray) -> tuple[np.ndarray, Box]:
        """Model-input rendering of an RGB image.

        Args:
            image: ``[H0, W0, 3]`` uint8.

        Returns:
            ``([H, W, 3] uint8 canvas, canvas_in_original box)``. Feeding the canvas
            back to the processor must not resize it again.
        """
        raise NotImplementedError

    def geometry(self, inputs: Any, index: int, original_hw: tuple[int, int], canvas_in_original: Box) -> ImageGeometry:
        """Token layout of batch item ``index`` of ``inputs`` (processor outputs for the canvas)."""
        raise NotImplementedError


def pil_resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic PIL resize of ``[H, W, 3]`` uint8 to ``hw = (h, w)``; identity when the size matches."""
    if image.shape[:2] == tuple(hw):
        return image
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.Resampling.BICUBIC))
