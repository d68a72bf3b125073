"""Name the damaged or missing file of a checkpoint that fails to load, and say what to do.

transformers and safetensors report a truncated ``model.safetensors`` as ``header too large``
with no file named; here every such failure becomes one ValueError naming the checkpoint
folder, the file and the fix (re-download it), each under 300 characters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Files transformers reads to build a processor (their JSON is checked when that fails).
_PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
)
#: Any one of these holds a tokenizer's vocabulary.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "tokenizer.tiktoken",
    "spiece.model",
    "vocab.txt",
)
_INDEX = "model.safetensors.index.json"


def shorten(text: object, limit: int = 90) -> str:
    """``text`` on one line, cut to ``limit`` characters (error messages stay short)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _excerpt(message: str, error: Exception) -> ValueError:
    """``message`` with ``{error}`` replaced by the error's type and as much of its text as keeps
    the whole under 300 characters."""
    room = max(30, 295 - len(message) - len(type(error).__name__))
    return ValueError(message.replace("{error}", f"{type(error).__name__}: {shorten(error, room)}"))


def _folder(path: Path) -> str:
    """The folder as shown in messages: its path, or its tail when the path is long."""
    text = str(path)
    return text if len(text) <= 80 else ".../" + "/".join(path.parts[-2:])


def _damaged(path: Path, name: str, why: str, fix: str = "re-download that file") -> ValueError:
    """The one error for a damaged file ``name`` of checkpoint folder ``path``."""
    return ValueError(f"model: {name} in {_folder(path)} {why}; {fix}.")


def json_error(path: Path, names: tuple[str, ...]) -> ValueError | None:
    """The error for the first of ``names`` in ``path`` that is not valid JSON, if any."""
    for name in names:
        file = path / name
        if file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                return _damaged(path, name, f"is not valid JSON, it may be truncated ({shorten(error, 70)})")
    return None


def _safetensors_keys(path: Path, name: str) -> set[str]:
    """Tensor names in the header of ``path / name``; a ValueError naming the file when it is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path / name), framework="pt") as handle:  # reads the header only
            return set(handle.keys())
    except Exception as error:  # noqa: BLE001 -- SafetensorError, OSError...: all mean a damaged file
        raise _damaged(path, name, f"is damaged or incomplete ({shorten(error, 80)})") from error


def check_weight_files(path: Path) -> None:
    """Check the weight files ``from_pretrained`` will read, from their headers only (cheap).

    With ``model.safetensors.index.json``: valid JSON with a ``weight_map``, every shard
    it lists present and readable, and every tensor listed in the shard that holds it
    (a wrong index silently leaves weights randomly initialised). Without: a readable
    ``model.safetensors``. Each problem is a ValueError naming the file and the fix.
    """
    index = path / _INDEX
    if not index.is_file():
        if (path / "model.safetensors").is_file():
            _safetensors_keys(path, "model.safetensors")
        return
    fix = "re-download it (or delete it when the folder holds one complete model.safetensors)"
    error = json_error(path, (_INDEX,))
    if error is not None:
        raise _damaged(path, _INDEX, "is not valid JSON, it may be truncated", fix) from error
    weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise _damaged(path, _INDEX, "has no weight_map", fix)
    listed: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        listed.setdefault(str(shard), set()).add(tensor)
    for shard in sorted(listed):
        if not (path / shard).is_file():
            raise _damaged(path, shard, f"is missing (listed in {_INDEX})", "download it, or re-download the index")
    for shard, tensors in sorted(listed.items()):
        found = _safetensors_keys(path, shard)
        wrong = sorted(tensors - found) or sorted(t for t in found if weight_map.get(t) != shard)
        if wrong:
            raise _damaged(
                path,
                _INDEX,
                f"does not match {shard} (e.g. tensor {shorten(wrong[0], 60)!r})",
                "re-download the index with its shards",
            )


def _expected_processors(model_type: str) -> set[str]:
    """Processor class names a checkpoint of ``model_type`` may use: those of its adapter's
    model types and of the adapters it derives from (a SmolVLM checkpoint may ship Idefics3's
    processor, a Qwen3.5 one Qwen3-VL's); never those of families built on it later (a
    Qwen2-VL checkpoint does not use GLM-4.1V's)."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    from .families import ADAPTERS, adapter_class

    own = adapter_class(model_type)
    related = [a for a in ADAPTERS if issubclass(own, a)]
    return {PROCESSOR_MAPPING_NAMES[t] for a in related for t in a.model_types if PROCESSOR_MAPPING_NAMES.get(t)}


def _named_processor(path: Path) -> tuple[str, str | None]:
    """``(file, processor_class)`` of the first processor/tokenizer config that names a processor class."""
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file():
            named = json.loads(file.read_text(encoding="utf-8")).get("processor_class")
            if named:
                return name, str(named)
    return "processor_config.json", None


def check_processor_class(processor: Any, path: Path | None, model_type: str) -> None:
    """A ValueError naming the file when the processor built is not the one ``model_type`` uses."""
    expected = _expected_processors(model_type)
    actual = type(processor).__name__
    if not expected or actual in expected:
        return
    uses = " or ".join(repr(e) for e in sorted(expected))
    if path is None:
        raise ValueError(
            f"model: the hub checkpoint's processor is {actual!r}, a {model_type} checkpoint uses {uses}; "
            "re-download its processor_config.json."
        )
    name, named = _named_processor(path)
    raise _damaged(path, name, f"gives processor {named or actual!r}, a {model_type} checkpoint uses {uses}")


def processor_error(path: Path | None, model_type: str, error: Exception) -> ValueError:
    """The load error of a processor, naming the file at fault when the folder shows it."""
    if path is not None:
        found = json_error(path, _PROCESSOR_FILES)
        if found is not None:
            return found
        if not any((path / name).is_file() for name in _TOKENIZER_FILES):
            return _damaged(
                path,
                "tokenizer.json",
                "is missing (no tokenizer file at all)",
                "download the checkpoint's tokenizer files",
            )
        name, named = _named_processor(path)
        expected = _expected_processors(model_type)
        if named and expected and named not in expected:
            uses = " or ".join(repr(e) for e in sorted(expected))
            return _damaged(path, name, f"gives processor {named!r}, a {model_type} checkpoint uses {uses}")
        where = _folder(path)
    else:
        where = "the hub checkpoint"
    return _excerpt(
        f"model: cannot build the processor of {where} ({{error}}); if its processor_config.json, "
        "preprocessor_config.json or tokenizer files are damaged, re-download them.",
        error,
    )


def weights_error(path: Path | None, model_type: str, error: Exception) -> ValueError:
    """The load error of the model, naming the weight file at fault when the folder shows it."""
    if path is not None:
        check_weight_files(path)  # raises when a weight file is at fault
        where = _folder(path)
    else:
        where = "the hub checkpoint"
    return _excerpt(
        f"model: cannot load the {model_type} model of {where} ({{error}}); if its *.safetensors or config.json "
        "are damaged, re-download them.",
        error,
    )


def cached_folder(source: str, local_files_only: bool) -> Path | None:
    """The local snapshot folder of a hub id, when it is in the cache (to name damaged files)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # noqa: BLE001 -- not cached, or no hub client: nothing to inspect
        return None
