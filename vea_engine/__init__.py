"""VEA engine: Visual Evidence Augmentation for vision-language models, in plain PyTorch.

Pipeline (arXiv 2510.17771), each step a public function:

>>> from vea_engine import load_vlm, select_layers, extract_attention, evidence_map, highlight_uint8, answer
>>> vlm = load_vlm("Qwen/Qwen2.5-VL-7B-Instruct")                        # doctest: +SKIP
>>> layers = select_layers("preset", vlm.layer_kinds, vlm.name).layers    # doctest: +SKIP
>>> attention = extract_attention(vlm, [image], question, layers)         # doctest: +SKIP
>>> evidence = evidence_map(attention)                # [B, H, W] in [0, 1]  # doctest: +SKIP
>>> highlighted = highlight_uint8(attention.canvas_uint8, evidence)  # uint8  # doctest: +SKIP
>>> answer(vlm, highlighted, question, "vea")                              # doctest: +SKIP

or :func:`run_vea` for all of it. This package never imports ComfyUI; heavy
modules (transformers) load lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_vlm": "loading",
    "VLM": "loading",
    "select_layers": "layers",
    "LayerSelection": "layers",
    "layer_kinds": "decoder",
    "LayerKinds": "decoder",
    "extract_attention": "attribution",
    "attention_maps": "attribution",
    "attribute": "signals",
    "SIGNALS": "signals",
    "relative_attention": "relatt",
    "gradient_x_input": "gradient",
    "layer_scores": "attribution",
    "AttentionMap": "attribution",
    "denoise_scores": "attribution",
    "paint_scores": "attribution",
    "evidence_map": "attribution",
    "capture_attention_rows": "capture",
    "denoise": "mask",
    "paint": "mask",
    "gaussian_smooth": "mask",
    "minmax_normalize": "mask",
    "blend": "mask",
    "highlight_uint8": "mask",
    "heatmap": "mask",
    "answer": "answering",
    "prefill_answers": "answering",
    "decode_answers": "answering",
    "Prefilled": "answering",
    "run_vea": "pipeline",
    "VEAResult": "pipeline",
    "ImageGeometry": "geometry",
    "Canvas": "geometry",
    "Frame": "geometry",
    "TokenLayout": "geometry",
    "encode_batch": "inputs",
    "apply_resolution": "loading",
    "parse_max_memory": "loading",
    "QUANTIZATIONS": "loading",
    "Method": "methods",
    "METHODS": "methods",
    "remap_mask": "geometry",
    "build_prompt": "config",
    "profile_layers": "profiling",
    "LayerProfile": "profiling",
    "evidence_labels": "labels",
    "plot_profile": "profile_plot",
    "evaluate": "evaluation",
    "summarize": "summary",
    "load_manifest": "data",
    "load_good_samples": "data",
    "DEFAULTS": "config",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vea_engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
