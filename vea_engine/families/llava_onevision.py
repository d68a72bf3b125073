"""LLaVA-OneVision: LLaVA-NeXT's ``anyres`` layout with SigLIP tiles and ``anyres_max_N`` pooling.

Everything of :mod:`.llava_next` holds (base image first, then the unpadded tile
grid row by row with one ``image_newline`` token per row; canvas = the kept cells
of the padded best-resolution page), with three differences:

* SigLIP keeps all its patches (``vision_feature_select_strategy="full"``, no
  CLS); a 384-px tile holds 27 patches of 14 px, so the cells are spread evenly
  over the tile (:attr:`AnyresLayout.cell` = 384 / 27 px);
* when the kept grid holds more than ``N`` tiles' worth of cells (by a factor
  1.1^2), the model shrinks it by bilinear interpolation to
  ``int(rows / r) x int(cols / r)``, ``r = sqrt(rows * cols / (N * 27^2))``; the
  token grid then covers the same canvas box with larger, evenly spread cells;
* a prompt with several images (:meth:`~.base.FamilyAdapter.encode_multi`) gets no tiles: each
  image is its squashed base grid plus one newline token (:attr:`LlavaOnevisionAdapter.multi_image_placeholders`).
"""

from __future__ import annotations

import math

from .llava_next import LlavaNextAdapter


class LlavaOnevisionAdapter(LlavaNextAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    nested_images = True
    fallback_template = "<|im_start|>user {image}\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    multi_image = True

    @property
    def multi_image_placeholders(self) -> int:
        """``<image>`` placeholders of each image of a prompt holding several: the processor and the model
        do not tile such images; each is its base grid (``p x p``) plus one newline token."""
        return self.base_side**2 + 1

    def _expected_strategy(self) -> str:
        return "full"

    @property
    def max_tiles(self) -> int:
        """``N`` of the model's ``vision_aspect_ratio = "anyres_max_N"`` (the processor must agree)."""
        model = getattr(self.config, "vision_aspect_ratio", "anyres_max_9")
        processor = getattr(self.processor, "vision_aspect_ratio", model)
        if processor != model:
            raise ValueError(
                f"{self.family}: the processor's vision_aspect_ratio {processor!r} differs from the model's {model!r}."
            )
        if not model.startswith("anyres_max_") or not model.removeprefix("anyres_max_").isdigit():
            raise ValueError(f"{self.family}: vision_aspect_ratio {model!r} is not 'anyres_max_<N>'.")
        return int(model.removeprefix("anyres_max_"))

    def _downsample(self, rows: int, cols: int) -> tuple[int, int]:
        ratio = math.sqrt(rows * cols / (self.max_tiles * self.base_side**2))
        if ratio > 1.1:
            return int(rows // ratio), int(cols // ratio)
        return rows, cols
