"""Shared test helpers (plain functions and constants; the fixtures live in ``tests/conftest.py``).

Import as ``from tests.helpers import ...`` (the repository root is on ``sys.path``, see
``pyproject.toml``), never from ``conftest``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from vea_engine.testing.tiny_models import FAMILIES

REPO = Path(__file__).resolve().parents[1]

#: Every family a tiny checkpoint is built for (the engine's own list).
ALL_FAMILIES: tuple[str, ...] = FAMILIES
#: The first three families (LLaVA-1.5, Qwen2-VL, Qwen2.5-VL): most engine tests run on these.
ENGINE_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "llava")
#: The others: tiled canvases, bidirectional image attention, sliding windows, per-head q/k norms.
NEW_FAMILIES: tuple[str, ...] = tuple(family for family in ALL_FAMILIES if family not in ENGINE_FAMILIES)


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m vea_engine ARGS`` in a fresh process from the repository root, output captured.

    Slow (a Python start and a torch import per call): for the one test of the real
    entry point; every other CLI test calls :func:`cli` in-process.
    """
    cmd = [sys.executable, "-m", "vea_engine", *(str(a) for a in args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def cli(capsys, *args) -> tuple[int, str]:
    """``vea_engine.cli.main(ARGS)`` in this process: ``(exit code, what it printed to stdout)``.

    Errors are logged (logger ``vea_engine``), not printed: read them with ``caplog``.
    """
    from vea_engine.cli import main

    capsys.readouterr()  # drop anything printed before
    root = logging.getLogger()
    # main() calls logging.basicConfig(), which would attach a handler to the root logger for the rest of the
    # session if it had none (pytest's logging plugin normally holds one there; this keeps it so without it)
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)
    try:
        code = main([str(a) for a in args])
    finally:
        if guard is not None:
            root.removeHandler(guard)
    return code, capsys.readouterr().out


def cli_json(capsys, *args) -> dict:
    """:func:`cli` of a command that succeeds and prints one JSON summary; returns the summary."""
    code, out = cli(capsys, *args)
    assert code == 0, out
    return json.loads(out)


def vea_run_args(model_dir, image_path, out_dir) -> list:
    """Arguments of a short ``run`` (layers 1-2, three new tokens)."""
    return [
        "run",
        "--model",
        model_dir,
        "--image",
        image_path,
        "--question",
        "What is written?",
        "--layers",
        "1,2",
        "--max-new-tokens",
        "3",
        "--out",
        out_dir,
    ]


def eval_args(model, data, methods: str, out, *extra) -> list[str]:
    """``eval`` command-line arguments (``python -m vea_engine eval ...`` or ``cli.main``)."""
    return [
        "eval",
        "--model",
        str(model),
        "--data",
        str(data),
        "--methods",
        methods,
        "--out",
        str(out),
        *map(str, extra),
    ]


@contextmanager
def continuations(vlm):
    """The batch size of every ``generate`` call of ``vlm`` that decodes on from kept prefills (a ``cache``
    argument: :func:`~vea_engine.answering.decode_answers`), in order."""
    sizes: list[int] = []
    generate = vlm.model.generate

    def recording(*args, **kwargs):
        if kwargs.get("cache") is not None:
            sizes.append(int(kwargs["input_ids"].shape[0]))
        return generate(*args, **kwargs)

    vlm.model.generate = recording
    try:
        yield sizes
    finally:
        del vlm.model.generate


def plain_tokens(vlm, inputs, tokens: int):
    """The oracle of every decoding test: one greedy ``generate`` call of the encoded batch ``inputs`` alone,
    ``[B, T]`` new token ids."""
    import torch

    tokenizer = vlm.processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    greedy = {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None}
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=tokens, pad_token_id=pad, **greedy)
    return out[:, inputs["input_ids"].shape[1] :]


def whole_prompt_layers(vlm, preferred: tuple[int, ...]) -> tuple[int, ...]:
    """``preferred`` where all are attention layers that see the whole prompt with their own keys; else the
    model's layers that do (LFM2-VL, Qwen3.5: attention at 2 and 5; Llama 4: its NoPE layers), or on a decoder
    with KV-shared layers the first of them (Gemma 4: 2; its other layers are sliding windows that cut the image
    off, or reuse an earlier layer's keys)."""
    kinds = vlm.layer_kinds

    def whole(i: int) -> bool:
        return kinds.layers[i].softmax and kinds.layers[i].window is None and kinds.layers[i].kv_layer == i

    if all(i < kinds.num_layers and whole(i) for i in preferred):
        return tuple(preferred)
    own = tuple(i for i in kinds.attention if whole(i))
    shared = any(kind.kv_layer != i for i, kind in enumerate(kinds.layers))
    return own[:1] if shared else own
