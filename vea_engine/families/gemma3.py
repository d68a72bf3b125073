"""Gemma 3: one fixed square input, patches average-pooled to a square token grid.

The image processor resizes every image (no aspect ratio kept) to
``size = (S, S)`` (896 for the released models); the SigLIP tower cuts
``patch``-px patches (``S / patch = 64`` per side) and the projector
average-pools them ``k x k`` to ``mm_tokens_per_image`` tokens (16 x 16 = 256),
emitted row-major between ``<start_of_image>`` and ``<end_of_image>``. So the
canvas is the resized ``S x S`` image, showing the whole original, and token
``(r, c)`` covers the ``(S / side)``-px square ``(r, c)`` of it. As in the
reference code, the canvas is the processor's own ``pixel_values`` de-normalised.

The text decoder mixes sliding-window and global layers and lets the image
tokens attend to each other bidirectionally (``token_type_ids``); the captured
rows use the mask each layer really receives, so they equal eager attention.

Pan-and-scan (``do_pan_and_scan``) adds crops with their own token blocks; it is
not supported (token_layout raises).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry import Canvas, Frame, TokenLayout
from .common import processor_canvas
from .llava import FixedGridAdapter


class Gemma3Adapter(FixedGridAdapter):
    family = "gemma3"
    model_types = ("gemma3",)
    nested_images = True
    fallback_template = "<start_of_turn>user\n{image}{prompt}<end_of_turn>\n<start_of_turn>model\n"
    multi_image = True

    @property
    def tokens_per_side(self) -> int:
        side = math.isqrt(int(self.config.mm_tokens_per_image))
        if side * side != int(self.config.mm_tokens_per_image):
            raise ValueError(f"gemma3: mm_tokens_per_image={self.config.mm_tokens_per_image} is not a square.")
        return side

    def render(self, image: np.ndarray, rounding: str = "truncate") -> Canvas:
        pixels = processor_canvas(self.processor.image_processor, image, rounding, do_pan_and_scan=False)
        return Canvas(pixels, Frame.whole(image.shape[:2], pixels.shape[:2]))

    def token_layout(self, inputs: Any, index: int, frame: Frame) -> TokenLayout:
        pixels = inputs["pixel_values"]  # [n_images, 3, S, S]
        if pixels.shape[0] != inputs["input_ids"].shape[0]:
            raise ValueError(
                f"gemma3: {pixels.shape[0]} image crops for {inputs['input_ids'].shape[0]} prompts; pan-and-scan "
                "crops are not supported by VEA. Set do_pan_and_scan=False in the processor config."
            )
        side = self.tokens_per_side
        return TokenLayout.single_grid(side, side, pixels.shape[-2:])
