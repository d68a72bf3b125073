"""PaliGemma: one fixed square input, one square token grid, a bidirectional prefix.

The SigLIP image processor resizes every image (aspect ratio not kept) to
``S x S`` (224, 448 or 896 px); the tower's ``patch``-px patches (14 px) are the
image tokens, row-major: ``(S / patch)^2`` ``<image>`` tokens at the start of the
prompt, then ``<bos>``, the prompt and ``\\n`` (the processor writes all of that;
there is no chat template). The canvas is the resized ``S x S`` image, showing the
whole original.

The whole prefix (image and prompt, ``token_type_ids == 0``) attends
bidirectionally; the captured rows use the mask the layers receive, so they
equal eager attention. The processor also returns ``labels`` (for fine-tuning);
they are dropped, since a forward pass with labels computes a loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..geometry import Box, ImageGeometry
from .base import FamilyAdapter
from .common import processor_pixels_to_uint8


class PaliGemmaAdapter(FamilyAdapter):
    family = "paligemma"
    model_types = ("paligemma",)
    fallback_template = "{image}{prompt}"

    @property
    def patch_size(self) -> int:
        return int(self.config.vision_config.patch_size)

    def encode(self, images: list[Image.Image], prompts: list[str]) -> Any:
        inputs = super().encode(images, prompts)
        inputs.pop("labels", None)
        return inputs

    def render(self, image: np.ndarray) -> tuple[np.ndarray, Box]:
        ip = self.processor.image_processor
        pixels = ip(images=[image], return_tensors="pt")["pixel_values"][0]  # [3, S, S]
        h0, w0 = image.shape[:2]
        return processor_pixels_to_uint8(pixels, ip), (0.0, 0.0, float(w0), float(h0))

    def geometry(self, inputs: Any, index: int, original_hw: tuple[int, int], canvas_in_original: Box) -> ImageGeometry:
        h, w = inputs["pixel_values"].shape[-2:]
        p = self.patch_size
        return ImageGeometry.single_grid(
            rows=h // p, cols=w // p, canvas_hw=(h, w), original_hw=original_hw, canvas_in_original=canvas_in_original
        )
