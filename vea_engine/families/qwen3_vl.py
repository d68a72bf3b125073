"""Qwen3-VL: the Qwen2-VL geometry with 16-px patches.

The processor (``Qwen2VLImageProcessor`` with ``patch_size=16``) resizes to
multiples of ``patch * merge = 32`` px (``smart_resize``) and the merger fuses
``2 x 2`` patches into one token, row-major: the token grid is
``(grid_h / 2) x (grid_w / 2)`` of ``image_grid_thw``, each token a 32-px square
of the resized image, which is the canvas (see :mod:`.qwen_vl`). DeepStack adds
vision features to the hidden states of the first decoder layers at the same
image positions; attention capture is unaffected.
"""

from __future__ import annotations

from .qwen_vl import QwenVLAdapter


class Qwen3VLAdapter(QwenVLAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
