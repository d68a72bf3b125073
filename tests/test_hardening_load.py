"""A damaged checkpoint gives one ValueError that names the folder, the file and the fix.

Each case copies a tiny checkpoint into ``tmp_path`` and damages one file the way
downloads and copies go wrong: a truncated or empty ``model.safetensors``, a
missing or truncated tokenizer, a processor config of another model or cut short,
a truncated ``config.json``, and a sharded checkpoint whose index is truncated,
lists a missing shard, puts a tensor in the wrong shard or has no ``weight_map``.
Every message stays under 300 characters.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest

from vea_engine.loading import load_vlm

pytestmark = pytest.mark.usefixtures("one_thread")

INDEX = "model.safetensors.index.json"


@pytest.fixture
def checkpoint(tiny_model_dirs, tmp_path):
    """``checkpoint(family="qwen2_vl", sharded=False)``: a fresh copy of a tiny checkpoint to damage."""

    def make(family: str = "qwen2_vl", sharded: bool = False) -> Path:
        folder = tmp_path / f"{family}-copy"
        shutil.copytree(tiny_model_dirs[family], folder)
        if sharded:
            _shard(folder)
        return folder

    return make


def _shard(folder: Path) -> None:
    """Split ``model.safetensors`` into two shards with an index, as large checkpoints ship."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
    (folder / "model.safetensors").unlink()
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _refused(folder: Path, file: str, *fix: str) -> str:
    """``load_vlm(folder)`` raises one short ValueError naming ``folder`` and ``file`` and saying ``fix``."""
    with pytest.raises(ValueError) as error:
        load_vlm(folder, dtype="float32")
    message = str(error.value)
    assert len(message) < 300, message
    assert str(folder) in message and re.search(rf"\b{re.escape(file)}\b", message), message
    for words in fix:
        assert words in message, message
    return message


def _index(folder: Path) -> dict:
    return json.loads((folder / INDEX).read_text())


@pytest.mark.parametrize("size", [0, 5, 100], ids=["empty", "5-bytes", "100-bytes"])
def test_truncated_safetensors(checkpoint, size):
    folder = checkpoint()
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:size])
    _refused(folder, "model.safetensors", "damaged or incomplete", "re-download that file")


def test_safetensors_cut_in_the_middle_and_header_too_large(checkpoint):
    folder = checkpoint("llava")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _refused(folder, "model.safetensors", "incomplete metadata", "re-download that file")
    weights.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")  # the header length of a file cut short
    _refused(folder, "model.safetensors", "header too large", "re-download that file")


def test_missing_tokenizer(checkpoint):
    folder = checkpoint()
    (folder / "tokenizer.json").unlink()
    _refused(folder, "tokenizer.json", "is missing", "tokenizer files")


def test_truncated_tokenizer(checkpoint):
    folder = checkpoint("gemma3")
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 3])
    _refused(folder, "tokenizer.json", "not valid JSON", "re-download that file")


@pytest.mark.parametrize("family, other", [("qwen2_vl", "LlavaProcessor"), ("llava", "LlavaNextProcessor")])
def test_processor_config_of_another_model(checkpoint, family, other):
    folder = checkpoint(family)
    config = json.loads((folder / "processor_config.json").read_text())
    config["processor_class"] = other  # LlavaNextProcessor even loads, and fails only at the first image
    (folder / "processor_config.json").write_text(json.dumps(config))
    _refused(folder, "processor_config.json", repr(other), f"a {family} checkpoint uses", "re-download that file")


def test_processor_config_broken_json(checkpoint):
    folder = checkpoint()
    (folder / "processor_config.json").write_text('{"processor_class": ')
    _refused(folder, "processor_config.json", "not valid JSON", "re-download that file")


def test_config_broken_json(checkpoint):
    folder = checkpoint()
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])
    _refused(folder, "config.json", "not valid JSON", "re-download that file")


def test_sharded_checkpoint_loads(checkpoint):
    vlm = load_vlm(checkpoint(sharded=True), dtype="float32")
    assert vlm.num_layers > 0


def test_truncated_index(checkpoint):
    folder = checkpoint(sharded=True)
    text = (folder / INDEX).read_text()
    (folder / INDEX).write_text(text[: len(text) // 2])
    _refused(folder, INDEX, "not valid JSON", "re-download it")


def test_index_without_weight_map(checkpoint):
    folder = checkpoint(sharded=True)
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": 1}}))
    _refused(folder, INDEX, "has no weight_map", "re-download it")


def test_index_lists_a_missing_shard(checkpoint):
    folder = checkpoint(sharded=True)
    (folder / "model-00002-of-00002.safetensors").unlink()
    _refused(folder, "model-00002-of-00002.safetensors", "is missing", "download it, or re-download the index")


def test_index_puts_a_tensor_in_the_wrong_shard(checkpoint):
    """transformers would load this silently, with that tensor randomly initialised."""
    folder = checkpoint(sharded=True)
    index = _index(folder)
    name, shard = next(iter(index["weight_map"].items()))
    other = next(s for s in set(index["weight_map"].values()) if s != shard)
    index["weight_map"][name] = other
    (folder / INDEX).write_text(json.dumps(index))
    _refused(folder, INDEX, "does not match", name, "re-download the index with its shards")


def test_index_misses_a_tensor(checkpoint):
    folder = checkpoint(sharded=True)
    index = _index(folder)
    name = next(iter(index["weight_map"]))
    del index["weight_map"][name]
    (folder / INDEX).write_text(json.dumps(index))
    _refused(folder, INDEX, "does not match", name)


def test_damaged_shard(checkpoint):
    folder = checkpoint(sharded=True)
    shard = folder / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:7])
    _refused(folder, "model-00001-of-00002.safetensors", "damaged or incomplete", "re-download that file")


def test_long_folder_paths_keep_messages_short(tiny_model_dirs, tmp_path):
    folder = tmp_path / ("a" * 120) / ("b" * 120) / "qwen2_vl-copy"
    shutil.copytree(tiny_model_dirs["qwen2_vl"], folder)
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model\.safetensors in \.\.\./b+/qwen2_vl-copy is damaged") as error:
        load_vlm(folder)
    assert len(str(error.value)) < 300
