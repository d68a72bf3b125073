"""The paper's prompts and defaults, spelled out by hand."""

from __future__ import annotations

import pytest

from vea_engine.config import DEFAULTS, PRESET_LAYERS, build_prompt

# byte for byte as the reference code writes them: typographic quotes U+201C / U+201D
PREFIX = (
    "Directly answer the question based on the image, no explanation is needed. If the image does not contain "
    "any relevant evidence, output \u201cI cannot answer based on the given image.\u201d "
)
HINT = "Only use words from the picture, especially those in the highlighted region, to answer the question. "


def test_prompts_are_the_papers():
    assert build_prompt("What is the total?", "qa") == PREFIX + "Question: What is the total?"
    assert build_prompt("What is the total?", "vea") == PREFIX + HINT + "Question: What is the total?"
    # the question is inserted as given: not stripped, not altered
    assert build_prompt(" What is the total? \n", "qa") == PREFIX + "Question:  What is the total? \n"
    assert build_prompt("Name\tit", "vea").endswith("Question: Name\tit")
    qa = build_prompt("Q", "qa").encode("utf-8")
    assert qa.count("\u201c".encode()) == 1 and qa.count("\u201d".encode()) == 1 and b'"' not in qa
    assert qa.endswith("image.\u201d Question: Q".encode())  # the closing quote, one space, then the question
    for empty in ("", "   ", "\n\t"):
        with pytest.raises(ValueError, match="question must be a non-empty string"):
            build_prompt(empty, "qa")
    assert build_prompt("Why?", "custom", "Q={question}!") == "Q=Why?!"
    with pytest.raises(ValueError, match=r"needs a template containing '\{question\}'"):
        build_prompt("Why?", "custom", "no placeholder")
    with pytest.raises(ValueError, match="prompt style must be one of"):
        build_prompt("Why?", "fancy")


def test_defaults_and_presets_are_the_papers():
    assert (DEFAULTS.lam, DEFAULTS.sigma, DEFAULTS.alpha, DEFAULTS.max_new_tokens, DEFAULTS.top_layer_fraction) == (
        10.0,
        0.5,
        0.5,
        50,
        0.10,
    )
    assert PRESET_LAYERS["llava-hf/llava-1.5-7b-hf"] == (14, 15, 17, 19)
    assert PRESET_LAYERS["Qwen/Qwen2.5-VL-7B-Instruct"] == (18, 22, 24)
    assert PRESET_LAYERS["google/gemma-3-27b-it"] == (35, 37, 40, 41, 47, 53, 58)
