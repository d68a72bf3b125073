"""Tiny random-weight checkpoints of real transformers VLM architectures, saved like a user's.

Each builder makes a real ``*ForConditionalGeneration`` model (Qwen2-VL, Qwen2.5-VL,
LLaVA-1.5, Gemma 3, LLaVA-NeXT, Qwen3-VL, LLaVA-OneVision, Idefics3, SmolVLM, InternVL,
PaliGemma, Llama 4, GLM-4.1V, GLM-4.5V, GLM-4.6V, Mistral 3, Gemma 4) with a few-layer text decoder and vision
tower, a processor (offline tokenizer with the family's special tokens, the family's own
image/video processor, its chat template) and a greedy generation config, and saves them to a folder laid out
exactly like a downloaded checkpoint::

    config.json  generation_config.json  model.safetensors
    tokenizer.json  tokenizer_config.json  chat_template.jinja
    processor_config.json (processor, image and video processor settings)
    VEA_TINY_MODEL.json   <- {"family", "builder_version", "seed", "overrides"}, written last

so they load through the user code path::

    AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)
    AutoProcessor.from_pretrained(folder, local_files_only=True)

Nothing is downloaded. The tokenizer is a WordPiece model over a small lower-case
English vocabulary plus single letters and digits (with ``##`` continuations), so any
English question encodes (out-of-vocabulary words are spelled letter by letter,
non-ASCII symbols become the unknown token) and decodes to readable, space-separated
words. Weights are random but deterministic in ``seed`` and initialised with a large
standard deviation (0.2) so attention rows are clearly non-uniform.

The answers of these models are meaningless: they exist to exercise the real
architectures (GQA, M-RoPE, window attention, sliding-window and bidirectional-image
masks, prefix-LM masks, chunked attention, NoPE layers, mixtures of experts, q/k norms,
CLIP feature selection, anyres tiling and unpadding, image splitting, pixel shuffle,
processor token expansion) in tests and benchmarks.
Image grids are kept small (tens of tokens per image) so every model builds in seconds.

SmolVLM's processor needs the ``num2words`` package (:data:`FAMILY_REQUIREMENTS`);
without it that family is skipped by :func:`build_tiny_models`.

Layout of the package (one job per module):

* :mod:`.tokenizer` - the offline WordPiece tokenizer maker every family wraps;
* :mod:`.spec` - :class:`TinySpec` (sizes, override validation), :class:`FamilyBuilder`
  (how a family's parts are made) and :class:`~.spec.FamilyExpectations` (hand-written
  facts its checkpoint must show, read by ``tests/test_tiny_models.py``);
* :mod:`.common` - config fragments several families share (CLIP / SigLIP towers,
  text sizes, a Llama-style decoder, greedy generation ids);
* one module per family, mirroring ``vea_engine/families``: :mod:`.qwen_vl` (Qwen2-VL,
  Qwen2.5-VL), :mod:`.qwen3_vl`, :mod:`.llava`, :mod:`.llava_next`,
  :mod:`.llava_onevision`, :mod:`.gemma3`, :mod:`.idefics3` (Idefics3, SmolVLM),
  :mod:`.internvl`, :mod:`.paligemma`, :mod:`.llama4`, :mod:`.glm4v` (GLM-4.1V, GLM-4.5V,
  GLM-4.6V), :mod:`.mistral3`, :mod:`.gemma4`, :mod:`.lfm2_vl` (LFM2-VL: built once the decoder's layer kinds let
  capture skip its convolution layers; not in the registry yet) - each holds that family's tokenizer, config, processor and generation builders,
  its chat template and its expectations;
* :mod:`.registry` - the family -> builder table and the lookups over it
  (:data:`FAMILIES`, :data:`IMAGE_SIZES`, requirements, spec resolution);
* :mod:`.build` - deterministic weights, saving, the marker, the up-to-date check and
  the public builders.

Adding a family = one family module in this package + one registry line:

1. write ``<family>.py`` with its tokenizer / config / processor / generation
   functions, its chat template, an ``EXPECTED = FamilyExpectations(...)`` of
   hand-worked facts (chat text, image token, image-token counts per input size) and a
   ``FamilyBuilder(..., expected=EXPECTED, image_size=..., image_size_multiple=...,
   requirements=...)``;
2. add ``"<family>": <module>.<BUILDER>,`` to ``registry._BUILDERS``.

Defaults (:data:`IMAGE_SIZES`, :data:`FAMILY_REQUIREMENTS`, which overrides apply) and
the parametrised tests in ``tests/test_tiny_models.py`` pick it up from the registry.
"""

from __future__ import annotations

from .build import (
    BUILDER_VERSION,
    MARKER_NAME,
    build_tiny_model,
    build_tiny_models,
    read_marker,
    tiny_config,
    tiny_processor,
)

# Importable from here as before the split, but outside ``__all__`` (``X as X`` marks a re-export).
from .gemma3 import GEMMA3_CHAT_TEMPLATE as GEMMA3_CHAT_TEMPLATE
from .idefics3 import IDEFICS3_CHAT_TEMPLATE as IDEFICS3_CHAT_TEMPLATE
from .idefics3 import SMOLVLM_CHAT_TEMPLATE as SMOLVLM_CHAT_TEMPLATE
from .internvl import INTERNVL_CHAT_TEMPLATE as INTERNVL_CHAT_TEMPLATE
from .llava import LLAVA_CHAT_TEMPLATE as LLAVA_CHAT_TEMPLATE
from .llava_next import LLAVA_NEXT_CHAT_TEMPLATE as LLAVA_NEXT_CHAT_TEMPLATE
from .llava_onevision import LLAVA_ONEVISION_CHAT_TEMPLATE as LLAVA_ONEVISION_CHAT_TEMPLATE
from .qwen3_vl import QWEN3_VL_CHAT_TEMPLATE as QWEN3_VL_CHAT_TEMPLATE
from .qwen_vl import QWEN_CHAT_TEMPLATE as QWEN_CHAT_TEMPLATE
from .registry import FAMILIES, FAMILY_REQUIREMENTS, IMAGE_SIZES, available_families, missing_requirements
from .spec import FamilyBuilder as FamilyBuilder
from .spec import TinySpec

__all__ = [
    "BUILDER_VERSION",
    "FAMILIES",
    "FAMILY_REQUIREMENTS",
    "IMAGE_SIZES",
    "MARKER_NAME",
    "TinySpec",
    "available_families",
    "build_tiny_model",
    "build_tiny_models",
    "missing_requirements",
    "read_marker",
    "tiny_config",
    "tiny_processor",
]
