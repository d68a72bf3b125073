"""Load a VLM checkpoint (local folder or hub id) with its processor and family adapter.

A damaged checkpoint (a truncated ``model.safetensors``, a wrong or truncated
``model.safetensors.index.json``, a missing tokenizer file, a processor config that
does not match) gives one ValueError naming the folder, the file and what to do,
instead of the library's error from deep inside the load.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint_files import (
    cached_folder,
    check_processor_class,
    check_weight_files,
    json_error,
    processor_error,
    shorten,
    weights_error,
)
from .config import PAPER_MAX_PIXELS, RESOLUTION_MODES
from .decoder import text_decoder_layers
from .families import FamilyAdapter, adapter_class, supported_model_types

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

DTYPES = {"auto": "auto", "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Attention kernels. ``auto`` (the default): ``eager`` under the paper's resolution -- the reference
#: code's kernel, so a paper run reproduces it bit for bit, and cheap at that size -- else ``sdpa``,
#: whose memory does not grow with the square of the tokens. Capture works on every kernel.
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3")


def resolve_attn_implementation(attn_implementation: str, resolution: str | int) -> str:
    """The kernel ``auto`` stands for at a resolution (other names are returned as they are)."""
    if attn_implementation != "auto":
        return attn_implementation
    return "eager" if resolution == "paper" else "sdpa"


@dataclass(frozen=True)
class VLM:
    """A loaded vision-language model, ready for attribution and answering.

    Attributes:
        model: the transformers ``*ForConditionalGeneration`` module, in eval mode.
        processor: its processor; the tokenizer pads on the left.
        adapter: the family adapter (prompting and token geometry).
        name: the path or hub id it was loaded from.
        model_type: ``config.model_type``.
        num_layers: number of text decoder layers.
    """

    model: Any
    processor: Any
    adapter: FamilyAdapter
    name: str
    model_type: str
    num_layers: int

    @property
    def device(self) -> torch.device:
        """Device of the input embeddings (where inputs must go)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype


def _check_source(source: str | os.PathLike) -> tuple[str, bool]:
    """Validate a local folder or hub id; returns ``(source, is_local)``."""
    text = os.fspath(source).strip() if source is not None else ""
    if not text:
        raise ValueError(
            "model: no checkpoint given; pass a folder containing config.json or a hub id like 'org/name'."
        )
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model: folder {path} has no config.json; point to the checkpoint folder itself.")
        weights = list(path.glob("*.safetensors")) + list(path.glob("*.safetensors.index.json"))
        if not weights:
            legacy = list(path.glob("*.bin"))
            hint = " It has only .bin weights: convert them to safetensors." if legacy else ""
            raise ValueError(f"model: folder {path} has no *.safetensors weights.{hint}")
        return str(path), True
    if not _HUB_ID.fullmatch(text):
        raise ValueError(
            f"model: {text!r} is neither an existing folder nor a hub id 'org/name'; check the path "
            "(put checkpoints in ComfyUI's models/VLM folder)."
        )
    return text, False


def max_pixels_for(resolution: str | int) -> int | None:
    """The pixel cap a resolution choice stands for: ``paper`` -> 512*512, ``checkpoint`` -> None
    (the checkpoint's own limits), a positive pixel count (int or digits) -> itself."""
    if isinstance(resolution, str) and resolution.strip().isdigit():
        resolution = int(resolution.strip())
    if resolution == "paper":
        return PAPER_MAX_PIXELS
    if resolution == "checkpoint":
        return None
    if isinstance(resolution, int) and not isinstance(resolution, bool) and 0 < resolution <= 2**31:
        return resolution
    raise ValueError(
        f"resolution must be one of {RESOLUTION_MODES} or a pixel count such as 1048576, got {resolution!r}; "
        "'paper' (512*512) reproduces the paper."
    )


def apply_resolution(processor: Any, model_type: str, resolution: str | int = "paper", config: Any = None) -> None:
    """Set the input resolution of a loaded processor in place.

    Only processors that take a pixel budget (Qwen2/2.5/3-VL) change: ``paper`` caps
    them at 512*512 pixels as the reference code does, a number at that many pixels,
    ``checkpoint`` keeps the checkpoint's limits. Other families render every image
    at sizes fixed by their configs; for them ``paper`` and ``checkpoint`` are the
    same and a pixel count is an error.
    """
    cap = max_pixels_for(resolution)
    adapter_type = adapter_class(model_type)
    if cap is None or (resolution == "paper" and not adapter_type.pixel_budget):
        return
    if not adapter_type.pixel_budget:
        raise ValueError(
            f"resolution: {model_type} processors take no pixel budget (their input sizes are fixed by the "
            "checkpoint); choose 'paper' or 'checkpoint'."
        )
    adapter_type(processor, config).set_max_pixels(cap)


def _fill_processor_fields(processor: Any, config: Any) -> None:
    """Fill fields older LLaVA-family processor configs lack (``patch_size``,
    ``vision_feature_select_strategy``, ``num_additional_image_tokens``) from the model config.

    Without them transformers 5 fails with ``int // None``, or counts one image token
    too few: a CLIP tower emits a CLS token that the ``default`` strategy drops.
    """
    vision = getattr(config, "vision_config", None)
    if getattr(processor, "patch_size", 0) is None and getattr(vision, "model_type", "") == "clip_vision_model":
        if not getattr(processor, "num_additional_image_tokens", None):
            processor.num_additional_image_tokens = 1  # the CLS token
    fields = {
        "patch_size": getattr(vision, "patch_size", None),
        "vision_feature_select_strategy": getattr(config, "vision_feature_select_strategy", None),
    }
    for name, value in fields.items():
        if hasattr(processor, name) and getattr(processor, name) is None and value is not None:
            setattr(processor, name, value)


def load_vlm(
    source: str | os.PathLike,
    dtype: str = "auto",
    device: str | torch.device | None = None,
    attn_implementation: str = "auto",
    trust_remote_code: bool = False,
    local_files_only: bool | None = None,
    resolution: str | int = "paper",
) -> VLM:
    """Load a checkpoint through ``AutoModelForImageTextToText`` + ``AutoProcessor``.

    Args:
        source: a local checkpoint folder (config.json + safetensors) or a hub id.
        dtype: ``auto`` (the checkpoint's), ``float32``, ``float16`` or ``bfloat16``.
        device: ``cpu``, ``cuda``, ``cuda:1``...; ``auto`` spreads a large model over the
            available devices (accelerate ``device_map="auto"``); None = cpu.
        attn_implementation: the kernel the model runs on; capture works on all of them.
            ``auto``: eager under ``resolution="paper"`` (the reference's kernel: bit-exact
            reproduction), sdpa otherwise (see :data:`ATTN_IMPLEMENTATIONS`).
        trust_remote_code: run code shipped with the checkpoint. Off unless you opt in.
        local_files_only: never touch the network (default: on for folders, and when
            ``HF_HUB_OFFLINE`` is set).
        resolution: ``paper`` (processors with a pixel budget capped at 512*512, as in
            the reference code; the default), ``checkpoint`` (the checkpoint's own
            limits) or a pixel count. See :func:`apply_resolution`.

    Returns:
        A :class:`VLM`.

    Raises:
        ValueError: a bad argument, an unsupported checkpoint, or a damaged one: the
            message names the folder, the file at fault (a truncated ``*.safetensors``
            or index, a missing tokenizer, a processor config of another model...) and
            what to do. Weight files are checked from their headers before anything is
            built (:func:`check_weight_files`).
    """
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    max_pixels_for(resolution)  # arguments are checked before anything is read
    source, is_local = _check_source(source)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}.")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}.")
    attn_implementation = resolve_attn_implementation(attn_implementation, resolution)
    if local_files_only is None:
        local_files_only = is_local or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    common = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError) as error:
        damaged = json_error(Path(source), ("config.json",)) if is_local else None
        raise damaged or ValueError(f"model: cannot read the config of {source!r}: {shorten(error, 160)}") from error
    model_type = getattr(config, "model_type", None)
    if getattr(config, "vision_config", None) is None and model_type not in supported_model_types():
        raise ValueError(
            f"model: {source!r} is a {model_type!r} checkpoint without a vision tower, not a vision-language model; "
            f"VEA supports: {', '.join(supported_model_types())}."
        )
    adapter_type = adapter_class(model_type)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if attn_implementation == "sdpa" and getattr(text_config, "attn_logit_softcapping", None) is not None:
        # Gemma 2 decoders (PaliGemma 2) soft-cap attention logits, which SDPA cannot do: transformers refuses
        # SDPA for them. Eager computes the soft-capped attention; capture reads the same rows from it.
        log.info("%s soft-caps attention logits; loading it on eager attention (SDPA cannot soft-cap).", source)
        attn_implementation = "eager"
    device_map = "auto" if str(device) == "auto" else None
    folder = Path(source) if is_local else None
    if folder is not None:
        check_weight_files(folder)  # before the processor and the model are built
    try:
        processor = AutoProcessor.from_pretrained(source, **common)
    except ImportError as error:
        raise ValueError(f"model: the processor of {source!r} needs a package: {shorten(error, 160)}") from error
    except Exception as error:  # noqa: BLE001 -- json, tokenizers, KeyError...: one message naming the file
        folder = folder or cached_folder(source, local_files_only)
        raise processor_error(folder, model_type, error) from error
    check_processor_class(processor, folder, model_type)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            dtype=DTYPES[dtype],
            attn_implementation=attn_implementation,
            device_map=device_map,
            use_safetensors=True if is_local else None,
            **common,
        )
    except ImportError as error:
        raise ValueError(f"model: loading {source!r} needs a package: {shorten(error, 160)}") from error
    except (OSError, ValueError, KeyError, SafetensorError) as error:  # not RuntimeError: out of memory is no damage
        folder = folder or cached_folder(source, local_files_only)
        raise weights_error(folder, model_type, error) from error
    if device_map is None:
        model.to(torch.device(device or "cpu"))
    model.eval()
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"model: the processor of {source!r} has no tokenizer; re-download its tokenizer files.")
    tokenizer.padding_side = "left"
    _fill_processor_fields(processor, model.config)
    apply_resolution(processor, model_type, resolution, model.config)
    adapter = adapter_type(processor, model.config)
    num_layers = len(text_decoder_layers(model))
    log.info("loaded %s (%s, %d decoder layers, %s)", source, model_type, num_layers, attn_implementation)
    return VLM(model, processor, adapter, source, model_type, num_layers)
