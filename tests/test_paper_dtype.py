"""Paper-exact in half precision: the default ``run_vea`` answers each method with the token ids of a plain
answer, and the attribution that rides on the base answer's prefill is the stand-alone attribution, bit for bit.

The reference code runs models in bfloat16 and answers one prompt at a time. Each default answer here must be
the token ids of one plain greedy ``generate`` call on that method's prompt and image, in bfloat16 and float16,
on every family (float32 is covered by ``test_reuse.py`` and ``test_joint_decode.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import ALL_FAMILIES, continuations, plain_tokens
from vea_engine import answering
from vea_engine.answering import answer_inputs
from vea_engine.attribution import attention_maps, extract_attention
from vea_engine.pipeline import run_vea

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "What is written on the sign?"
TOKENS = 8
#: (dtype, kernel): bfloat16 on eager (the paper's kernel and dtype), float16 on SDPA
HALF = [("bfloat16", "eager"), ("float16", "sdpa")]


def _image(seed: int = 21, size=(150, 200)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((*size, 3)) * 200 + 20).astype(np.uint8)


def _plain_ids(vlm, images, style: str) -> torch.Tensor:
    """The oracle: ``[B, T]`` new token ids of one greedy ``generate`` call on the plain inputs of ``style``."""
    ((_, inputs),) = answer_inputs(vlm, images, QUESTION, style, max_new_tokens=TOKENS)
    return plain_tokens(vlm, inputs, TOKENS)


@pytest.mark.parametrize(("dtype", "attn"), HALF, ids=[d for d, _ in HALF])
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_default_run_vea_gives_each_answer_its_plain_token_ids(vlm_of, family, dtype, attn, monkeypatch):
    vlm = vlm_of(family, attn, dtype)
    images = [_image()]
    decoded: list[torch.Tensor] = []  # the new token ids of every answer, in the order they were decoded
    texts = answering._texts

    def recording(vlm_, new_tokens):
        decoded.append(new_tokens.clone())
        return texts(vlm_, new_tokens)

    monkeypatch.setattr(answering, "_texts", recording)
    with continuations(vlm) as batches:
        result = run_vea(vlm, images, QUESTION, None, max_new_tokens=TOKENS, methods=("base", "inst", "vea"))
    monkeypatch.undo()
    assert set(batches) <= {1}  # at most the base answer, alone, decoded on from the attribution pass
    assert len(decoded) == 3
    base, inst, vea = decoded
    assert torch.equal(base, _plain_ids(vlm, images, "qa"))  # decoded on from the attribution pass
    assert torch.equal(inst, _plain_ids(vlm, images, "vea"))
    assert torch.equal(vea, _plain_ids(vlm, result.highlighted, "vea"))


@pytest.mark.parametrize(("dtype", "attn"), HALF, ids=[d for d, _ in HALF])
@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava", "gemma3"])
def test_attribution_on_the_base_prefill_is_the_stand_alone_attribution(vlm_of, family, dtype, attn):
    """The rows captured in the base answer's prefill are those of a separate attribution pass, bit for bit."""
    vlm = vlm_of(family, attn, dtype)
    images = [_image(seed=22)]
    layers = (1, vlm.num_layers - 1)
    maps, _ = attention_maps(vlm, images, QUESTION, {"selected": layers}, base_answer_tokens=4)
    assert torch.equal(maps["selected"].scores, extract_attention(vlm, images, QUESTION, layers).scores)
