"""The released checkpoints' own configurations, at real scale, without weights.

Everything else in the suite runs on tiny checkpoints. Here each checkpoint of the
README's family table is rebuilt from its public files, transcribed into
``tests/fixtures/real_configs/<org>__<name>/`` (``config.json``, the image /
processor configs and the chat template; where each came from is in
``tests/fixtures/real_configs/SOURCES.md``):

* the **processor** is the real one at real scale: the checkpoint's image processor
  and processor settings and its chat template, loaded by ``AutoProcessor`` from the
  fixture folder. Only the tokenizer is a stand-in (the project's offline tokenizer of
  the family, :func:`vea_engine.testing.tiny_models.tiny_processor`), with the
  family's special tokens moved to the ids the checkpoint's config gives them, so
  the config's ``image_token_id`` is the token the processor writes;
* the **model** is the real config instantiated on the meta device (no memory, no
  weights): decoder depth (and the paper's preset depth), the attention modules
  capture hooks, and every config field the family adapter reads;
* for images of 224x224, 1024x768, 2000x1500, 4000x300 and 300x4000 (W x H), the
  processor's image-token count must be the adapter's token layout, and the
  adapter's canvas fed back through the processor must give the same layout (same
  ``input_ids``). Pixel-budget families (Qwen-VL, Qwen3.5, GLM-V) run at both resolution modes
  (``paper``: at most 512*512 pixels, ``checkpoint``: the checkpoint's own limits).

Checkpoints whose files could not be found are listed with the reason (skipped).
Offline, CPU only; processors and meta models are built once per module.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_configs"

#: Image sizes (W, H) every covered checkpoint is tried on.
SIZES = ((224, 224), (1024, 768), (2000, 1500), (4000, 300), (300, 4000))
PROMPT = "What is written on the sign?"

#: Per ``tiny_models`` family: config attribute -> the special token whose id it holds.
#: The stand-in tokenizer gives each of these tokens the id the real config has.
SPECIAL_TOKEN_FIELDS: dict[str, dict[str, str]] = {
    "qwen2_vl": {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    },
    "llava": {"image_token_index": "<image>"},
    "llava_next": {"image_token_index": "<image>"},
    "llava_onevision": {"image_token_index": "<image>", "video_token_index": "<video>"},
    "gemma3": {
        "image_token_index": "<image_soft_token>",
        "boi_token_index": "<start_of_image>",
        "eoi_token_index": "<end_of_image>",
    },
    "internvl": {"image_token_id": "<IMG_CONTEXT>"},
    "idefics3": {"image_token_id": "<image>"},
    "smolvlm": {"image_token_id": "<image>"},
    "paligemma": {"image_token_index": "<image>"},
    "llama4": {
        "image_token_index": "<|patch|>",
        "boi_token_index": "<|image_start|>",
        "eoi_token_index": "<|image_end|>",
    },
    "mistral3": {"image_token_index": "[IMG]"},
    "glm4v": {
        "image_token_id": "<|image|>",
        "video_token_id": "<|video|>",
        "image_start_token_id": "<|begin_of_image|>",
        "image_end_token_id": "<|end_of_image|>",
        "video_start_token_id": "<|begin_of_video|>",
        "video_end_token_id": "<|end_of_video|>",
    },
    "gemma4": {
        "image_token_id": "<|image|>",
        "boi_token_id": "<|image>",
        "eoi_token_id": "<image|>",
        "video_token_id": "<|video|>",
        "audio_token_id": "<|audio|>",
        "boa_token_id": "<|audio>",
        "eoa_token_index": "<audio|>",
    },
}
SPECIAL_TOKEN_FIELDS["qwen2_5_vl"] = SPECIAL_TOKEN_FIELDS["qwen3_vl"] = SPECIAL_TOKEN_FIELDS["qwen2_vl"]
SPECIAL_TOKEN_FIELDS["qwen3_5"] = SPECIAL_TOKEN_FIELDS["qwen3_5_moe"] = SPECIAL_TOKEN_FIELDS["qwen2_vl"]
SPECIAL_TOKEN_FIELDS["glm4v_moe"] = SPECIAL_TOKEN_FIELDS["glm46v"] = SPECIAL_TOKEN_FIELDS["glm4v"]

#: Families whose image placeholders include one newline token per row of the tiled grid.
NEWLINE_FAMILIES = ("llava_next", "llava_onevision")
#: Families whose processor takes a pixel budget (resolution modes apply).
PIXEL_BUDGET_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe", "glm4v", "glm4v_moe", "glm46v")
#: Of those, the families whose budget counts an image once per temporal patch frame (GLM-V: two frames).
FRAME_BUDGET_FAMILIES = ("glm4v", "glm4v_moe", "glm46v")
#: Decoder layer types without a softmax attention module (Qwen3.5's Gated DeltaNet, LFM2's convolutions).
NON_ATTENTION_LAYER_TYPES = ("linear_attention", "conv")


@dataclass(frozen=True)
class Checkpoint:
    """One released checkpoint.

    Attributes:
        hub_id: ``org/name`` on the hub.
        family: the ``tiny_models`` family whose offline tokenizer stands in.
        tokens: hand-computed image-token counts ``{(mode, (W, H)): n}`` (``mode`` None:
            every mode), checked against the processor independently of the adapter.
        missing: why the checkpoint is not covered (its files were not found); None when covered.
    """

    hub_id: str
    family: str
    tokens: dict[tuple[str | None, tuple[int, int]], int] = field(default_factory=dict)
    missing: str | None = None

    @property
    def folder(self) -> Path:
        return FIXTURES / self.hub_id.replace("/", "__")

    @property
    def modes(self) -> tuple[str, ...]:
        return ("paper", "checkpoint") if self.family in PIXEL_BUDGET_FAMILIES else ("checkpoint",)


def _every(n: int) -> dict[tuple[str | None, tuple[int, int]], int]:
    """The same count for every size and mode (fixed-size families)."""
    return {(None, size): n for size in SIZES}


_NOT_FOUND = "its {files} could not be found in the stored public sources (see tests/fixtures/real_configs/SOURCES.md)"

#: LLaVA-NeXT (336-px tiles of 24 x 24 patches, 14 px; pinpoints (H, W) 336x672, 672x336, 672x672, 1008x336,
#: 336x1008): 576 base tokens plus the unpadded tile grid (newline tokens not counted).
#: 224x224: every pinpoint holds it whole, the smallest wins (336x672): the 336x336 resize fills the left tile, the
#: padding tile is cut: 576 + 24 x 24 = 1152. 1024x768: 672x672 (largest resize, 672x504) -> 48 x 48 cells, the
#: model keeps int(768 * 48 / 1024) = 36 rows: 576 + 36 x 48 = 2304.
LLAVA_NEXT_TOKENS = {(None, (224, 224)): 576 + 24 * 24, (None, (1024, 768)): 576 + 36 * 48}

#: Qwen2-VL and Qwen2.5-VL (14-px patches merged 2 x 2: 28-px cells; 3,136 to 12,845,056 pixels), 1024x768: paper
#: 15 x 21 = 315 tokens (<= 512*512 px), checkpoint 27 x 37 = 999 tokens; 224x224: 8 x 8 = 64 tokens.
QWEN_14PX_TOKENS = {
    ("paper", (1024, 768)): 315,
    ("checkpoint", (1024, 768)): 999,
    (None, (224, 224)): 64,
}

#: Qwen3-VL (16-px patches merged 2 x 2: 32-px cells; 65,536 to 16,777,216 pixels). 1024x768: checkpoint 24 x 32 = 768
#: tokens (already a multiple of 32, inside the limits); paper (<= 512*512 px) scales by sqrt(3): 13 x 18 = 234.
#: 224x224: 7 x 7 cells = 50,176 px < 65,536, scaled up to 8 x 8 = 64 tokens in both modes.
QWEN3_VL_TOKENS = {
    ("paper", (1024, 768)): 234,
    ("checkpoint", (1024, 768)): 768,
    (None, (224, 224)): 64,
}

#: GLM-4.1V (14-px patches merged 2 x 2: 28-px cells; the budget 12,544 to 9,633,792 pixels counts the image's two
#: temporal frames, so one image holds 6,272 to 4,816,896 pixels). 224x224: 8 x 8 = 64 tokens in both modes.
#: 1024x768: checkpoint 1036 x 756 px (rounded to 28-px cells, inside the budget) = 37 x 27 = 999 tokens; paper
#: (<= 512*512 px per image) scales by sqrt(3) and floors: 588 x 420 px = 21 x 15 = 315 tokens.
GLM4V_TOKENS = {
    ("paper", (1024, 768)): 21 * 15,
    ("checkpoint", (1024, 768)): 37 * 27,
    (None, (224, 224)): 64,
}

#: Mistral Small 3.1 (longest side scaled down to at most 1540 px, both sides rounded up to 28-px cells: 14-px
#: patches merged 2 x 2; [IMG_BREAK] / [IMG_END] are other tokens). 224x224: 8 x 8 = 64. 1024x768: kept, 37 x 28 cells
#: (1024 / 28 = 36.6, 768 / 28 = 27.4) = 1036. 2000x1500: scaled by 1540 / 2000 to 1540 x 1155, 55 x 42 cells = 2310.
#: 4000x300 / 300x4000: scaled by 1540 / 4000 to 1540 x 115: 55 x 5 cells = 275.
MISTRAL_SMALL_TOKENS = {
    (None, (224, 224)): 64,
    (None, (1024, 768)): 1036,
    (None, (2000, 1500)): 2310,
    (None, (4000, 300)): 275,
    (None, (300, 4000)): 275,
}

#: Gemma 4 (280 tokens = 2,520 patches of 16 px, pooled 3 x 3; sides multiples of 48 px): an (H, W) image goes to
#: floor(sqrt(645,120 * H / W) / 48) x floor(sqrt(645,120 * W / H) / 48) tokens. 224x224: 16 x 16 = 256 (768 px);
#: 1024x768 and 2000x1500 (3:4): 14 x 19 = 266 (672 x 912 px); 4000x300: 4 x 61 = 244 (192 x 2928 px).
GEMMA4_TOKENS = {
    (None, (224, 224)): 256,
    (None, (1024, 768)): 266,
    (None, (2000, 1500)): 266,
    (None, (4000, 300)): 244,
    (None, (300, 4000)): 244,
}

CHECKPOINTS: tuple[Checkpoint, ...] = (
    Checkpoint("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", QWEN_14PX_TOKENS),
    Checkpoint("Qwen/Qwen2.5-VL-32B-Instruct", "qwen2_5_vl", missing=_NOT_FOUND.format(files="config.json")),
    Checkpoint("Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", QWEN_14PX_TOKENS),
    Checkpoint("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", QWEN_14PX_TOKENS),
    Checkpoint("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", QWEN3_VL_TOKENS),
    Checkpoint("Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", QWEN3_VL_TOKENS),
    # Qwen3.5 (hybrid decoders, softmax attention every fourth layer; the Qwen3-VL image processor files). The 9B and
    # 35B-A3B depths are checked on the meta device from transformers' default configs (tests/test_qwen3_5.py); their
    # own files were not found.
    Checkpoint("Qwen/Qwen3.5-0.8B", "qwen3_5", QWEN3_VL_TOKENS),
    Checkpoint("Qwen/Qwen3.5-9B", "qwen3_5", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("Qwen/Qwen3.5-35B-A3B", "qwen3_5_moe", missing=_NOT_FOUND.format(files="files")),
    # LLaVA-1.5: shortest edge -> 336, centre crop 336 x 336, 14-px patches: 24 x 24 = 576 tokens.
    Checkpoint("llava-hf/llava-1.5-7b-hf", "llava", _every(576)),
    Checkpoint("llava-hf/llava-1.5-13b-hf", "llava", _every(576)),
    Checkpoint("llava-hf/llava-v1.6-mistral-7b-hf", "llava_next", LLAVA_NEXT_TOKENS),
    Checkpoint("llava-hf/llava-v1.6-vicuna-7b-hf", "llava_next", LLAVA_NEXT_TOKENS),
    Checkpoint("llava-hf/llava-v1.6-vicuna-13b-hf", "llava_next", LLAVA_NEXT_TOKENS),
    Checkpoint("llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava_onevision", missing=_NOT_FOUND.format(files="files")),
    Checkpoint(
        "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision", missing=_NOT_FOUND.format(files="files")
    ),
    # Gemma 3: 896 x 896, 14-px patches pooled 4 x 4: 16 x 16 = 256 tokens.
    Checkpoint("google/gemma-3-4b-it", "gemma3", _every(256)),
    Checkpoint("google/gemma-3-27b-it", "gemma3", _every(256)),
    Checkpoint("OpenGVLab/InternVL3-8B-hf", "internvl", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("OpenGVLab/InternVL3_5-8B-HF", "internvl", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("HuggingFaceM4/Idefics3-8B-Llama3", "idefics3", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("HuggingFaceTB/SmolVLM-Instruct", "smolvlm", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("HuggingFaceTB/SmolVLM2-2.2B-Instruct", "smolvlm", missing=_NOT_FOUND.format(files="files")),
    # PaliGemma-448: 448 x 448, 14-px patches: 32 x 32 = 1024 tokens.
    Checkpoint("google/paligemma-3b-mix-448", "paligemma", _every(1024)),
    # Llama 4 Scout at real scale without these files: tests/test_llama4.py (transformers' processor defaults).
    Checkpoint("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4", missing=_NOT_FOUND.format(files="files")),
    # GLM-4.1V: the first-release files (flat config.json, see _config). GLM-4.5V / 4.6V: the processor and the
    # meta-device decoder are checked at transformers' full-scale defaults in tests/test_glm4v.py until found.
    Checkpoint("zai-org/GLM-4.1V-9B-Thinking", "glm4v", GLM4V_TOKENS),
    Checkpoint("zai-org/GLM-4.5V", "glm4v_moe", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("zai-org/GLM-4.6V-Flash", "glm46v", missing=_NOT_FOUND.format(files="files")),
    Checkpoint("mistralai/Mistral-Small-3.1-24B-Instruct-2503", "mistral3", MISTRAL_SMALL_TOKENS),
    Checkpoint("google/gemma-4-E2B-it", "gemma4", GEMMA4_TOKENS),
    Checkpoint("google/gemma-4-E4B-it", "gemma4", GEMMA4_TOKENS),
    # LFM2-VL: the 450M files found are the remote-code revision (model_type "lfm2-vl"), which AutoProcessor cannot
    # load offline; tests/test_lfm2_vl.py reads them into transformers' own processor and config instead.
    Checkpoint(
        "LiquidAI/LFM2-VL-450M",
        "lfm2_vl",
        missing="only its remote-code revision was found (model_type 'lfm2-vl'); tests/test_lfm2_vl.py reads it",
    ),
    Checkpoint("LiquidAI/LFM2-VL-1.6B", "lfm2_vl", missing=_NOT_FOUND.format(files="files")),
)

COVERED = tuple(c for c in CHECKPOINTS if c.missing is None)


def _param(checkpoint: Checkpoint, *rest: Any) -> Any:
    marks = () if checkpoint.missing is None else pytest.mark.skip(reason=f"{checkpoint.hub_id}: {checkpoint.missing}")
    return pytest.param(checkpoint, *rest, id="-".join([checkpoint.hub_id, *map(_id, rest)]), marks=marks)


def _id(value: Any) -> str:
    return f"{value[0]}x{value[1]}" if isinstance(value, tuple) else str(value)


# ---------------------------------------------------------------------------------------
# Building the processor (real image processor + chat template, stand-in tokenizer)
# ---------------------------------------------------------------------------------------


def _config(checkpoint: Checkpoint) -> Any:
    """The checkpoint's config.json as VEA reads it: as its family reads the file
    (:meth:`~vea_engine.families.base.FamilyAdapter.config_json`; GLM-4.1V's first release is flat,
    see :mod:`vea_engine.families.glm4v`), else as ``AutoConfig`` does."""
    from transformers import CONFIG_MAPPING, AutoConfig

    from vea_engine.families import adapter_class

    data = _config_json(checkpoint)
    fixed = adapter_class(data["model_type"]).config_json(data)
    if fixed is not data:
        return CONFIG_MAPPING[fixed["model_type"]](**fixed)
    return AutoConfig.from_pretrained(checkpoint.folder, local_files_only=True)


def _config_json(checkpoint: Checkpoint) -> dict[str, Any]:
    return json.loads((checkpoint.folder / "config.json").read_text(encoding="utf-8"))


def _write_stand_in_tokenizer(checkpoint: Checkpoint, config: Any, folder: Path) -> None:
    """Save the family's offline tokenizer into ``folder`` with its special tokens at the config's ids.

    The tiny tokenizer keeps its special tokens as added tokens with small ids; they
    become entries of the WordPiece vocabulary at the real ids (the vocabulary may have
    gaps), so the processor's placeholder tokens get exactly the ids the model config
    expects.
    """
    from vea_engine.testing.tiny_models import tiny_processor

    tiny_processor(checkpoint.family).tokenizer.save_pretrained(folder)
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    for token in data["added_tokens"]:
        vocab[token["content"]] = token["id"]
    remap: dict[int, int] = {}
    for attribute, token in SPECIAL_TOKEN_FIELDS[checkpoint.family].items():
        real_id = getattr(config, attribute, None)
        if real_id is None:
            continue
        assert token in vocab, f"{checkpoint.family} stand-in tokenizer lacks {token}"
        remap[vocab[token]] = int(real_id)
        vocab[token] = int(real_id)
    taken = sorted(vocab.values())
    assert len(taken) == len(set(taken)), f"{checkpoint.hub_id}: remapped special-token ids collide"
    for token in data["added_tokens"]:
        token["id"] = vocab[token["content"]]
    for special in (data.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [remap.get(i, i) for i in special["ids"]]
    path.write_text(json.dumps(data), encoding="utf-8")


def _build_processor(checkpoint: Checkpoint, config: Any, folder: Path) -> Any:
    """``AutoProcessor`` of the fixture folder + the stand-in tokenizer, loaded offline."""
    from transformers import AutoProcessor

    for source in checkpoint.folder.iterdir():
        if source.suffix in (".json", ".jinja"):
            shutil.copy(source, folder / source.name)
    _write_stand_in_tokenizer(checkpoint, config, folder)
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    processor.tokenizer.padding_side = "left"
    return processor


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """``real.processor(checkpoint, mode)``, ``real.model(checkpoint)``, ``real.config(checkpoint)``: built once."""
    from transformers import AutoModelForImageTextToText

    from vea_engine.loading import apply_resolution

    class Built:
        def __init__(self) -> None:
            self._configs: dict[str, Any] = {}
            self._processors: dict[tuple[str, str], Any] = {}
            self._models: dict[str, Any] = {}

        def config(self, checkpoint: Checkpoint) -> Any:
            if checkpoint.hub_id not in self._configs:
                self._configs[checkpoint.hub_id] = _config(checkpoint)
            return self._configs[checkpoint.hub_id]

        def processor(self, checkpoint: Checkpoint, mode: str) -> Any:
            key = (checkpoint.hub_id, mode)
            if key not in self._processors:
                config = self.config(checkpoint)
                folder = tmp_path_factory.mktemp(checkpoint.hub_id.replace("/", "__"))
                processor = _build_processor(checkpoint, config, folder)
                apply_resolution(processor, config.model_type, mode, config)
                self._processors[key] = processor
            return self._processors[key]

        def model(self, checkpoint: Checkpoint) -> Any:
            if checkpoint.hub_id not in self._models:
                with torch.device("meta"):
                    self._models[checkpoint.hub_id] = AutoModelForImageTextToText.from_config(self.config(checkpoint))
            return self._models[checkpoint.hub_id]

    return Built()


@pytest.fixture(scope="module")
def images() -> dict[tuple[int, int], np.ndarray]:
    """Deterministic structured RGB images, ``(W, H) -> [H, W, 3]`` uint8."""
    out = {}
    for w, h in SIZES:
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x // 37 + y // 23) % 2) * 255], -1)
        out[(w, h)] = image.astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------
# Recording which config fields an adapter reads
# ---------------------------------------------------------------------------------------


class _ConfigReads:
    """A read-only view of a model config that records every attribute read.

    ``reads`` maps a dotted path (``vision_config.patch_size``) to whether the real
    config has it. A missing attribute raises AttributeError as usual, so an
    adapter's ``getattr(config, name, default)`` falls back exactly as it would.
    """

    def __init__(self, target: Any, path: str = "", reads: dict[str, bool] | None = None) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "reads", {} if reads is None else reads)

    def __getattr__(self, name: str) -> Any:
        from transformers import PreTrainedConfig

        path = f"{self._path}.{name}" if self._path else name
        try:
            value = getattr(self._target, name)
        except AttributeError:
            self.reads.setdefault(path, False)
            raise
        self.reads[path] = True
        if isinstance(value, PreTrainedConfig):
            return _ConfigReads(value, path, self.reads)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the checkpoint config is read-only here")


#: Attributes adapters probe knowing only one of them exists (the image token's two spellings).
_ALTERNATIVES = (("image_token_id", "image_token_index"),)


def _missing_reads(reads: dict[str, bool]) -> list[str]:
    missing = {path for path, found in reads.items() if not found}
    for names in _ALTERNATIVES:
        if any(reads.get(name) for name in names):
            missing -= set(names)
    return sorted(missing)


def _qwen_tokens(size: tuple[int, int], patch: int, low: int, high: int, merge: int = 2) -> int:
    """Image tokens of a Qwen-VL processor for a ``(W, H)`` image, by hand: both sides rounded to multiples of
    ``patch * merge``, scaled down (up) to fit ``[low, high]`` pixels, one token per ``merge x merge`` patches."""
    import math

    w, h = size
    factor = patch * merge
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > high:
        beta = math.sqrt(h * w / high)
        hb, wb = (
            max(factor, math.floor(h / beta / factor) * factor),
            max(factor, math.floor(w / beta / factor) * factor),
        )
    elif hb * wb < low:
        beta = math.sqrt(low / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return (hb // factor) * (wb // factor)


def _qwen_limits(checkpoint: Checkpoint, mode: str) -> tuple[int, int, int]:
    """``(patch, min_pixels, max_pixels)`` of one image a Qwen-VL (GLM-V) processor must use: the checkpoint's
    preprocessor_config.json (GLM-V: its budget over the temporal frames), with ``paper`` capping the maximum at
    512*512 pixels."""
    from vea_engine.config import PAPER_MAX_PIXELS

    data = json.loads((checkpoint.folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    size = data.get("size") or {}
    frames = int(data["temporal_patch_size"]) if checkpoint.family in FRAME_BUDGET_FAMILIES else 1
    low = int(data.get("min_pixels") or size["shortest_edge"]) // frames
    high = int(data.get("max_pixels") or size["longest_edge"]) // frames
    return int(data["patch_size"]), low, (min(high, PAPER_MAX_PIXELS) if mode == "paper" else high)


def _assert_same_layout(again: Any, layout: Any, family: str, size: tuple[int, int]) -> None:
    """The canvas's own token layout equals the original's: same canvas, same grids (token ranges, rows,
    columns) on the same pixels.

    One documented exception (:mod:`vea_engine.families.llava_next`): the anyres families'
    base grid is the whole *input* squashed, and the canvas shows the original up to less
    than one cell of the tiled grid at the padded edges (it may keep a sliver of the black
    padding or lose a sliver of the image). So the base grid of the original's layout
    lies on the canvas up to that sliver: its box may differ by at most one tiled-grid
    cell per axis, in total over both edges.
    """
    assert again.canvas_hw == layout.canvas_hw, size
    shape = lambda lay: [(p.token_start, p.rows, p.cols) for p in lay.parts]  # noqa: E731
    assert shape(again) == shape(layout), size
    for index, (p, q) in enumerate(zip(again.parts, layout.parts, strict=True)):
        if family in NEWLINE_FAMILIES and index == 0:
            tiled = layout.parts[1]
            cell_w = (tiled.box[2] - tiled.box[0]) / tiled.cols
            cell_h = (tiled.box[3] - tiled.box[1]) / tiled.rows
            assert abs(p.box[0] - q.box[0]) + abs(p.box[2] - q.box[2]) <= cell_w, (size, p.box, q.box)
            assert abs(p.box[1] - q.box[1]) + abs(p.box[3] - q.box[3]) <= cell_h, (size, p.box, q.box)
        else:
            assert p.box == q.box, (size, index, p.box, q.box)


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


def test_every_covered_checkpoint_has_its_files():
    """A covered checkpoint's folder holds a config, an image processor config and a chat template
    (or none, for PaliGemma whose processor writes the prompt itself)."""
    assert COVERED, "no checkpoint is covered"
    for checkpoint in COVERED:
        names = {p.name for p in checkpoint.folder.iterdir()}
        assert "config.json" in names, checkpoint.hub_id
        assert names & {"preprocessor_config.json", "processor_config.json"}, checkpoint.hub_id
        if checkpoint.family != "paligemma":
            assert names & {"chat_template.json", "chat_template.jinja"}, checkpoint.hub_id
    documented = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    for checkpoint in COVERED:
        assert f"## {checkpoint.hub_id}" in documented, f"{checkpoint.hub_id} has no entry in SOURCES.md"


@pytest.mark.parametrize("checkpoint", [_param(c) for c in CHECKPOINTS])
def test_real_config_on_meta_device(checkpoint, real):
    """The released config builds the model on the meta device; its decoder depth is the file's (and the
    preset's) depth, capture finds exactly the softmax-attention layers the config's layer types name (every
    layer, except the linear-attention layers of a hybrid), and the config has what the adapter reads."""
    from vea_engine.capture import decoder_attention_modules
    from vea_engine.config import PRESET_NUM_LAYERS
    from vea_engine.families import adapter_class

    config = real.config(checkpoint)
    text = config.get_text_config()
    depth = int(text.num_hidden_layers)
    data = _config_json(checkpoint)
    written = data.get("text_config", data).get("num_hidden_layers")
    assert written is None or depth == written  # the file's own depth, where it writes one
    if checkpoint.hub_id in PRESET_NUM_LAYERS:
        assert depth == PRESET_NUM_LAYERS[checkpoint.hub_id]
    model = real.model(checkpoint)
    modules = decoder_attention_modules(model)
    types = getattr(text, "layer_types", None) or ["full_attention"] * depth
    assert len(types) == depth
    assert list(modules) == [i for i, kind in enumerate(types) if kind not in NON_ATTENTION_LAYER_TYPES]
    assert all(next(m.parameters()).is_meta for m in modules.values())
    adapter_class(config.model_type)  # the family is supported
    assert type(model).__name__ == config.architectures[0]


@pytest.mark.parametrize(
    "checkpoint, mode", [_param(c, m) for c in CHECKPOINTS for m in (c.modes if c.missing is None else ("-",))]
)
def test_token_layout_at_real_scale(checkpoint, mode, real, images):
    """For every test size: processor image tokens == the adapter's token layout (and the hand count),
    the canvas is laid out identically when fed back, and the adapter read only fields the config has."""
    from vea_engine.config import PAPER_MAX_PIXELS
    from vea_engine.families import get_adapter

    processor = real.processor(checkpoint, mode)
    config = real.config(checkpoint)
    view = _ConfigReads(config)
    adapter = get_adapter(processor, view)
    assert adapter.image_token_id == processor.tokenizer.convert_tokens_to_ids(
        SPECIAL_TOKEN_FIELDS[checkpoint.family][next(iter(SPECIAL_TOKEN_FIELDS[checkpoint.family]))]
    )
    for size in SIZES:
        image = images[size]
        canvas = adapter.render(image)
        inputs = adapter.encode([Image.fromarray(image)], [PROMPT])
        layout = adapter.token_layout(inputs, 0, canvas.frame)
        assert layout.canvas_hw == canvas.frame.canvas_hw == tuple(canvas.pixels.shape[:2]), size
        ids = inputs["input_ids"]
        placeholders = int((ids[0] == adapter.image_token_id).sum())
        positions = adapter.image_token_positions(ids, [layout])[0]
        assert positions.numel() == layout.n_tokens, size
        newlines = layout.parts[1].rows if checkpoint.family in NEWLINE_FAMILIES else 0
        assert placeholders == layout.n_tokens + newlines, size
        for (want_mode, want_size), want in checkpoint.tokens.items():
            if want_size == size and want_mode in (None, mode):
                assert layout.n_tokens == want, (size, mode)
        if checkpoint.family in PIXEL_BUDGET_FAMILIES:
            patch, low, high = _qwen_limits(checkpoint, mode)
            assert layout.n_tokens == _qwen_tokens(size, patch=patch, low=low, high=high), (size, mode)
            if mode == "paper":
                assert canvas.pixels.shape[0] * canvas.pixels.shape[1] <= PAPER_MAX_PIXELS, size
        # The canvas, fed back through the processor, is laid out as the same grids on the same pixels.
        again = adapter.render(canvas.pixels)
        assert again.pixels.shape == canvas.pixels.shape, size
        inputs_again = adapter.encode([Image.fromarray(canvas.pixels)], [PROMPT])
        _assert_same_layout(adapter.token_layout(inputs_again, 0, again.frame), layout, checkpoint.family, size)
        assert torch.equal(inputs_again["input_ids"], ids), size
    missing = _missing_reads(view.reads)
    assert not missing, f"{checkpoint.hub_id}: the adapter reads config fields the checkpoint lacks: {missing}"
    assert view.reads, "the adapter read nothing from the config"
