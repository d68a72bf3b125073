"""Load a VLM checkpoint (local folder or hub id) with its processor and family adapter.

A damaged checkpoint (a truncated ``model.safetensors``, a wrong or truncated
``model.safetensors.index.json``, a missing tokenizer file, a processor config that
does not match) gives one ValueError naming the folder, the file and what to do,
instead of the library's error from deep inside the load.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Mapping
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
from .decoder import LayerKinds, layer_kinds, text_decoder_layers
from .families import FamilyAdapter, adapter_class, supported_model_types

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

DTYPES = {"auto": "auto", "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Attention kernels. ``auto`` (the default): ``eager`` under the paper's resolution -- the reference
#: code's kernel, so a paper run reproduces it bit for bit, and cheap at that size -- else ``sdpa``,
#: whose memory does not grow with the square of the tokens. Capture works on every kernel.
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3")
#: Weight quantisation at load time. ``none`` (the default) keeps the checkpoint's weights; ``8bit`` (LLM.int8)
#: and ``4bit`` (NF4, computing in the model's dtype) go through bitsandbytes and need a CUDA GPU.
QUANTIZATIONS = ("none", "8bit", "4bit")

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_MAX_BUDGET = 2**50  # 1 PiB: anything larger is a typo
_MAX_MEMORY_ENTRIES = 16
_MAX_MEMORY_HELP = "e.g. 'cuda:0=8GiB,cpu=32GiB' (devices: cuda, cuda:N, cpu, mps, disk; sizes in B, KB..TB, KiB..TiB)"


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
        num_layers: number of text decoder layers (softmax attention or not; see :attr:`layer_kinds`).
    """

    model: Any
    processor: Any
    adapter: FamilyAdapter
    name: str
    model_type: str
    num_layers: int

    @property
    def layer_kinds(self) -> LayerKinds:
        """The kind of every decoder layer (:func:`~vea_engine.decoder.layer_kinds`): layer choices are
        checked against it, and ``.attention`` lists the softmax-attention layers VEA can read."""
        return layer_kinds(self.model)

    @property
    def device(self) -> torch.device:
        """Device the input embeddings run on (where inputs must go); for an offloaded embedding
        (weights on the meta device between calls) the device accelerate runs it on."""
        return module_device(self.model.get_input_embeddings())

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def device_map(self) -> dict[str, str] | None:
        """Where each part lives when the model was spread by accelerate (``{"model.language_model.layers.3":
        "disk", ...}``, devices as strings: ``cuda:0``, ``cpu``, ``disk``), else None."""
        return dispatch_map(self.model)


def _device_name(device: int | str | torch.device) -> str:
    """accelerate's device names (an int is a GPU index) as torch device strings."""
    if isinstance(device, int) and not isinstance(device, bool):
        return f"cuda:{device}"
    return str(device)


def dispatch_map(model: Any) -> dict[str, str] | None:
    """``module name -> device string`` (``cuda:0``, ``cpu``, ``disk``) of a model loaded with a device map
    (offloaded or quantised), None for a model that lives on one device as a whole."""
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return None
    return {name: _device_name(device) for name, device in device_map.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """The device a module computes on: where its first weight is, or, when accelerate keeps the
    weight offloaded (on the meta device between calls), its hook's execution device."""
    weight = next(module.parameters(), None)
    if weight is not None and weight.device.type != "meta":
        return weight.device
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is None:
        raise RuntimeError(
            f"{type(module).__name__} has its weights on the meta device and no accelerate hook; reload it."
        )
    return torch.device(_device_name(device))


def parse_size(text: str | int, what: str = "size") -> int:
    """Bytes of a memory size: an int, or a string like ``8GiB``, ``7.5GB``, ``512MiB``, ``1000000``
    (B, KB/MB/GB/TB = powers of 1000, KiB/MiB/GiB/TiB = powers of 1024). At least 1 byte, at most 1 PiB."""
    if isinstance(text, bool):
        raise ValueError(f"{what}: {text!r} is not a memory size; write e.g. '8GiB'.")
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.fullmatch(str(text).strip()[:40])
        if match is None:
            raise ValueError(
                f"{what}: {str(text)[:40]!r} is not a memory size; write e.g. '8GiB', '7.5GB' or '512MiB'."
            )
        value = int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "B").upper()])
    if not 0 < value <= _MAX_BUDGET:
        raise ValueError(f"{what}: {text!r} is out of range; give between 1 byte and 1 PiB, e.g. '8GiB'.")
    return value


def _memory_key(name: Any) -> int | str:
    """A ``max_memory`` device as accelerate names it: GPU index (int), ``cpu``, ``mps`` or ``disk``."""
    if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < 1024:
        return name
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    if text in ("cpu", "mps", "disk"):
        return text
    if text == "cuda":
        return 0
    index = text.removeprefix("cuda:")
    if index.isdigit() and int(index) < 1024:
        return int(index)
    raise ValueError(f"max_memory: unknown device {str(name)[:40]!r}; {_MAX_MEMORY_HELP}.")


def parse_max_memory(spec: str | Mapping | None) -> dict[int | str, int] | None:
    """A memory budget per device, as accelerate's ``max_memory`` takes it.

    Args:
        spec: ``None``/empty (no budget: the model lives on one device), a string
            ``"cuda:0=8GiB,cpu=32GiB"`` (commas or spaces between entries), or a mapping
            ``{"cuda:0": "8GiB", "cpu": 32 * 2**30}``. Devices: ``cuda`` (= ``cuda:0``),
            ``cuda:N`` or ``N``, ``cpu``, ``mps``, ``disk``; sizes as :func:`parse_size`.

    Returns:
        ``{0: bytes, "cpu": bytes, ...}`` (GPU indices as ints), or None.

    Raises:
        ValueError: a malformed entry, an unknown device, a device named twice, a size
            out of range, or more than 16 entries; the message shows the expected form.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            return None
        if len(text) > 1000:
            raise ValueError(f"max_memory: {text[:40]!r}... is too long; {_MAX_MEMORY_HELP}.")
        # spaces around '=' and between a number and its unit are allowed: ' CPU = 4 GiB ' reads as cpu=4GiB
        text = re.sub(r"\s*=\s*", "=", text)
        text = re.sub(r"(\d)\s+([KMGT]?i?B)\b", r"\1\2", text, flags=re.IGNORECASE)
        entries = []
        for item in re.split(r"[,\s]+", text):
            name, sep, size = item.partition("=")
            if not sep or not name or not size:
                raise ValueError(f"max_memory: {item[:40]!r} is not 'device=size'; {_MAX_MEMORY_HELP}.")
            entries.append((name, size))
    elif isinstance(spec, Mapping):
        entries = list(spec.items())
    else:
        raise ValueError(f"max_memory must be a string or a mapping, got {type(spec).__name__}; {_MAX_MEMORY_HELP}.")
    if len(entries) > _MAX_MEMORY_ENTRIES:
        raise ValueError(f"max_memory: {len(entries)} entries, at most {_MAX_MEMORY_ENTRIES}; {_MAX_MEMORY_HELP}.")
    budget: dict[int | str, int] = {}
    for name, size in entries:
        key = _memory_key(name)
        if key in budget:
            raise ValueError(f"max_memory: device {_device_name(key)!r} is named twice; give each device once.")
        budget[key] = parse_size(size, f"max_memory[{_device_name(key)}]")
    if not any(key != "disk" for key in budget):
        raise ValueError(f"max_memory: give at least one GPU or the CPU, not only the disk; {_MAX_MEMORY_HELP}.")
    return budget


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

    Only processors that take a pixel budget (Qwen2/2.5/3-VL, GLM-4.1V/4.5V/4.6V) change: ``paper`` caps
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
    max_memory: str | Mapping | None = None,
    offload_folder: str | os.PathLike | None = None,
    quantization: str = "none",
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
        max_memory: a memory budget per device, ``"cuda:0=8GiB,cpu=32GiB"`` or a mapping
            (:func:`parse_max_memory`). The model is then spread by accelerate: decoder
            layers fill the GPU budget first, then the CPU's, the rest stays on disk and
            is read in layer by layer as the forward pass reaches it (slower, but a 7B
            model answers within an 8 GB GPU). ``device`` (if given) must be one of the
            devices named. None (the default): the whole model on ``device``.
        offload_folder: where accelerate may write weights it keeps on disk (a folder;
            created). Safetensors checkpoints are read in place and need none.
        quantization: ``none`` (default), ``8bit`` or ``4bit`` weights through bitsandbytes
            (:data:`QUANTIZATIONS`); needs the ``bitsandbytes`` package and a CUDA GPU.
            Quantised weights stay where they are loaded (they cannot be moved afterwards).

    Returns:
        A :class:`VLM` (:attr:`VLM.device_map` tells where each part went when spread).

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
    budget = parse_max_memory(max_memory)
    check_quantization(quantization)
    device_map = _device_map(device, budget, quantization)
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
    read_as = _family_config(Path(source), adapter_type) if is_local else None  # an older config.json layout
    config = read_as or config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if attn_implementation == "sdpa" and getattr(text_config, "attn_logit_softcapping", None) is not None:
        # Gemma 2 decoders (PaliGemma 2) soft-cap attention logits, which SDPA cannot do: transformers refuses
        # SDPA for them. Eager computes the soft-capped attention; capture reads the same rows from it.
        log.info("%s soft-caps attention logits; loading it on eager attention (SDPA cannot soft-cap).", source)
        attn_implementation = "eager"
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
    placement = _placement_options(budget, offload_folder, quantization, dtype, config)  # its errors are not damage
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            **({"config": read_as} if read_as is not None else {}),
            dtype=DTYPES[dtype],
            attn_implementation=attn_implementation,
            device_map=device_map,
            use_safetensors=True if is_local else None,
            **placement,
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
    kinds = layer_kinds(model)
    num_layers = len(text_decoder_layers(model))
    log.info("loaded %s (%s, %s, %s)", source, model_type, kinds.describe(), attn_implementation)
    if device_map is not None:
        log.info("%s is spread over devices: %s", source, describe_placement(dispatch_map(model) or {}))
    return VLM(model, processor, adapter, source, model_type, num_layers)


def check_quantization(quantization: str) -> None:
    """Raise a ValueError unless ``quantization`` is a choice of :data:`QUANTIZATIONS` that this machine can run:
    ``8bit``/``4bit`` need the bitsandbytes package and a CUDA GPU (both are named when missing)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {str(quantization)[:40]!r}.")
    if quantization == "none":
        return
    missing, fixes = [], []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes (not installed)")
        fixes.append("run `pip install bitsandbytes` in this Python")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch sees none)")
        fixes.append("run on a CUDA GPU")
    if missing:
        raise ValueError(
            f"quantization={quantization!r} needs {' and '.join(missing)}; {' and '.join(fixes)}, or choose "
            "'none' (max_memory offloads a large model)."
        )


def _device_map(device: str | torch.device | None, budget: dict | None, quantization: str) -> str | dict | None:
    """The ``device_map`` for ``from_pretrained``: None (load, then move as a whole), ``auto`` (spread), or a
    single-device map (quantised weights are placed while loading)."""
    name = None if device is None else str(device)
    if budget is not None:
        gpus = [key for key in budget if isinstance(key, int)]
        available = torch.cuda.device_count()
        bad = [f"cuda:{index}" for index in gpus if index >= available]
        if bad:
            raise ValueError(
                f"max_memory names {', '.join(bad)}, but torch sees {available} CUDA GPU(s) here; budget the "
                "GPUs that exist (cuda:0...) or give only cpu=... (CPU and disk)."
            )
        if name not in (None, "auto") and _memory_key(name) not in budget:
            raise ValueError(
                f"device {name!r} is not in max_memory ({', '.join(_device_name(k) for k in budget)}); name it "
                f"there, e.g. '{name}=8GiB,cpu=32GiB', or leave device empty."
            )
        return "auto"
    if name == "auto":
        return "auto"
    if quantization != "none":
        if name is not None and torch.device(name).type != "cuda":
            raise ValueError(
                f"quantization={quantization!r} runs on a CUDA GPU, but device is {name!r}; choose a cuda device "
                "or quantization='none'."
            )
        return {"": torch.device(name) if name else torch.device("cuda", torch.cuda.current_device())}
    return None


def _family_config(folder: Path, adapter_type: type[FamilyAdapter]) -> Any | None:
    """The config of a local checkpoint built from its ``config.json`` as its family reads the file
    (:meth:`~vea_engine.families.base.FamilyAdapter.config_json`); None where the file is read as it is."""
    from transformers import CONFIG_MAPPING

    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    fixed = adapter_type.config_json(data)
    if fixed is data:
        return None
    log.info("%s: config.json is in an older layout; read as its family's release read it.", folder)
    return CONFIG_MAPPING[fixed["model_type"]](**fixed)


def _placement_options(
    budget: dict | None, offload_folder: str | os.PathLike | None, quantization: str, dtype: str, config: Any
) -> dict:
    """``from_pretrained`` keywords for a memory budget, an offload folder and quantisation."""
    options: dict[str, Any] = {}
    if budget is not None:
        options["max_memory"] = dict(budget)
    if offload_folder is not None:
        folder = Path(offload_folder).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(
                f"offload_folder: cannot create {folder} ({error.strerror or shorten(error, 120)}); "
                "give a writable folder."
            ) from error
        options["offload_folder"] = str(folder)
    if quantization == "none":
        return options
    from transformers import BitsAndBytesConfig

    # parts a budget keeps on the CPU stay unquantised there (bitsandbytes computes on the GPU only)
    offload = budget is not None and any(not isinstance(key, int) for key in budget)
    if quantization == "8bit":
        options["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True, llm_int8_enable_fp32_cpu_offload=offload)
        return options
    compute = DTYPES[dtype]
    if compute in ("auto", torch.float32):
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        compute = getattr(text_config, "dtype", None) or getattr(config, "dtype", None)
        compute = getattr(torch, compute, None) if isinstance(compute, str) else compute
        compute = compute if compute in (torch.float16, torch.bfloat16) else torch.bfloat16
    options["quantization_config"] = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute,
        llm_int8_enable_fp32_cpu_offload=offload,
    )
    return options


def describe_placement(device_map: Mapping[str, str]) -> str:
    """``cuda:0: 20 decoder layers + 3 other parts; cpu: 8 decoder layers; disk: ...`` for a device map."""
    counts: dict[str, list[int]] = {}
    for name, device in device_map.items():
        layer = re.search(r"\.layers\.\d+$", name) is not None
        entry = counts.setdefault(str(device), [0, 0])
        entry[0 if layer else 1] += 1
    parts = []
    for device, (layers, other) in counts.items():
        text = " + ".join(
            piece
            for piece in (f"{layers} decoder layers" if layers else "", f"{other} other parts" if other else "")
            if piece
        )
        parts.append(f"{device}: {text}")
    return "; ".join(parts)
