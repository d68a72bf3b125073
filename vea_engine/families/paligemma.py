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

from PIL import Image

from .llava import FixedGridAdapter


class PaliGemmaAdapter(FixedGridAdapter):
    family = "paligemma"
    model_types = ("paligemma",)
    fallback_template = "{image}{prompt}"

    def encode(self, images: list[Image.Image], prompts: list[str]) -> Any:
        inputs = super().encode(images, prompts)
        inputs.pop("labels", None)
        return inputs
