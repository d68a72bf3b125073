"""GLM-4.1V, GLM-4.5V and GLM-4.6V: the Qwen2-VL geometry with a budget that counts two frames.

The processor (``Glm4vImageProcessor`` / ``Glm46VImageProcessor``) resizes an image to
multiples of ``patch * merge = 28`` px, cuts 14-px patches and the vision tower fuses each
``2 x 2`` block into one language token, row-major, exactly as Qwen2-VL: the token grid is
``(grid_h / 2) x (grid_w / 2)`` of ``image_grid_thw``, each token a 28-px square of the
resized image. The resize differs from Qwen's ``smart_resize`` in two ways: the pixel
budget ``[shortest_edge, longest_edge]`` of the processor's ``size`` counts the image once
per temporal patch frame (an image is two identical frames), so an image holds at most
``longest_edge / temporal_patch_size`` pixels; and a side shorter than 28 px first scales
the whole image up. The canvas is a PIL resize of the original to that size (as for
Qwen-VL, see :mod:`.qwen_vl`).

The prompt wraps each image's ``<|image|>`` tokens in ``<|begin_of_image|>`` and
``<|end_of_image|>``; those two tokens are not image features and are not on the grid.
All decoder layers are softmax attention (GLM-4.5V's experts replace MLPs only). ``render`` and
``token_layout`` are Qwen-VL's: the processor outputs (``image_grid_thw``) are the same.
"""

from __future__ import annotations

from typing import Any

from .common import size_value
from .qwen_vl import QwenVLAdapter


class Glm4vAdapter(QwenVLAdapter):
    family = "glm4v"
    model_types = ("glm4v", "glm4v_moe", "glm46v")

    @classmethod
    def config_json(cls, data: dict[str, Any]) -> dict[str, Any]:
        """GLM-4.1V's first release wrote a flat ``config.json``: the decoder's fields at the top level,
        no ``text_config`` (as the transformers of its release read it). transformers 5 ignores such
        fields and builds its default decoder (other M-RoPE sections, positions, rotary fraction); here
        they become ``text_config``, so the checkpoint's own decoder is built."""
        if "text_config" in data:
            return data
        import inspect

        from transformers import CONFIG_MAPPING, PreTrainedConfig

        text_class = CONFIG_MAPPING[data["model_type"]].sub_configs["text_config"]
        taken = set(inspect.signature(text_class.__init__).parameters) - set(
            inspect.signature(PreTrainedConfig.__init__).parameters
        )
        taken |= {"rope_scaling", "rope_theta", "partial_rotary_factor", "attention_bias", "eos_token_id"}
        flat = dict(data)
        flat["text_config"] = {key: flat.pop(key) for key in list(flat) if key in taken}
        return flat

    @property
    def _frames(self) -> int:
        """Frames the pixel budget counts per image (``temporal_patch_size``)."""
        return int(self._image_processor.temporal_patch_size)

    def _aspect_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """GLM-4.1V's ``smart_resize`` first scales a side under one token cell up to the cell (truncating),
        then checks the aspect ratio."""
        h, w = hw
        cell = self.patch_size * self.merge_size
        if h < cell or w < cell:
            scale = max(cell / h, cell / w)
            h, w = int(h * scale), int(w * scale)
        return h, w

    def canvas_hw(self, original_hw: tuple[int, int]) -> tuple[int, int]:
        """The processor's resize of an original ``(H0, W0)`` (GLM-4.1V's ``smart_resize``, one image = its frames)."""
        from transformers.models.glm4v.image_processing_glm4v import smart_resize

        size = self._image_processor.size
        return smart_resize(
            num_frames=self._frames,
            height=original_hw[0],
            width=original_hw[1],
            temporal_factor=self._frames,
            factor=self.patch_size * self.merge_size,
            min_pixels=size_value(size, "shortest_edge"),
            max_pixels=size_value(size, "longest_edge"),
        )
