"""VEA Load VLM reloads a checkpoint whose files changed and serves an unchanged one from ComfyUI's cache.

The loader's ``fingerprint_inputs`` is the size and modification time of every file of the
checkpoint folder, so the test edits a private copy of a tiny checkpoint between runs of the
same prompt on the real server (the shared one of each installed ComfyUI version, whose
``qwen-editable`` is that copy) and counts the loads in the server log.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.comfy_harness import load_vlm_node, status_messages

pytestmark = pytest.mark.comfy

LOAD_LINE = re.compile(r"loaded .*\(qwen2_5_vl, \d+ decoder layers")


@pytest.fixture
def served(server):
    """The shared server and its private, editable copy of the tiny Qwen2.5-VL (``VLM/qwen-editable``)."""
    return server, Path(server.models["VLM/qwen-editable"])


def _prompt() -> dict:
    image = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0}}
    answer = {"class_type": "VEAAnswer", "inputs": {"model": ["1", 0], "image": ["2", 0], "question": "What?",
              "question_per_line": False, "prompt_style": "qa", "max_new_tokens": 1}}  # fmt: skip
    return {"1": load_vlm_node("qwen-editable"), "2": image, "3": answer}


def _run(server) -> tuple[int, bool]:
    """Run the prompt; returns (loads logged so far, whether the loader came from the cache)."""
    entry, status = server.run(_prompt(), timeout=120)
    assert status == "success", server.log_tail()
    cached = "1" in status_messages(entry).get("execution_cached", {}).get("nodes", [])
    return len(LOAD_LINE.findall(server.log_text())), cached


def _later(path, seconds: int = 5) -> None:
    """Give ``path`` a modification time ``seconds`` later than its own (a re-download, a touch)."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))


def test_a_changed_checkpoint_reloads_and_an_unchanged_one_is_cached(served):
    server, folder = served
    loads, _ = _run(server)
    assert loads >= 1
    assert _run(server) == (loads, True), "an unchanged checkpoint must come from the cache"

    _later(folder / "model.safetensors")  # touched weights
    assert _run(server) == (loads + 1, False)
    assert _run(server) == (loads + 1, True)

    config = folder / "config.json"  # replaced by a new file with the same text and modification time
    text, stat = config.read_text(), os.stat(config)
    config.unlink()
    config.write_text(text + "\n")  # one byte longer: the size differs
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _run(server) == (loads + 2, False)

    processor = next(p for p in ("tokenizer_config.json", "preprocessor_config.json") if (folder / p).is_file())
    _later(folder / processor)
    assert _run(server) == (loads + 3, False)
