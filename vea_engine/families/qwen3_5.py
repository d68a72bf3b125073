"""Qwen3.5 and Qwen3.6 (dense and MoE): Qwen3-VL's processor and token geometry on a hybrid decoder.

The processor is ``Qwen3VLProcessor`` (16-px patches, 2x2 merge, one row-major grid per
image: see :mod:`.qwen3_vl`), so the canvas and token layout are Qwen3-VL's. Two things differ:

* the decoder runs three Gated DeltaNet (linear attention) layers for every softmax layer;
  VEA reads the softmax layers only (:func:`~vea_engine.decoder.layer_kinds`), the linear
  ones have no attention matrix;
* the chat template opens the answer with a ``<think>`` block by default. VEA asks for a
  direct answer, so the prompt is rendered with ``enable_thinking=False`` (an empty think
  block, ``<think>\\n\\n</think>\\n\\n``): the last prompt token, whose attention is read, is the
  one that emits the first answer token, as on every other family.
"""

from __future__ import annotations

from .qwen3_vl import Qwen3VLAdapter


class Qwen3_5Adapter(Qwen3VLAdapter):
    family = "qwen3_5"
    model_types = ("qwen3_5", "qwen3_5_moe")
    chat_template_options = {"enable_thinking": False}
