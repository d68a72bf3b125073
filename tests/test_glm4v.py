"""GLM-4.1V, GLM-4.5V and GLM-4.6V: one token grid per image, wrapped in begin/end-of-image tokens.

The oracle for the scores is eager ``output_attentions`` at the positions of the config's
``image_token_id``; the layout is checked by planting attention on known tokens (the
wrapping tokens, the first and last image token), independently of the capture code.
"""

from __future__ import annotations

import pytest
import torch

from tests.planting import planted
from vea_engine.attribution import extract_attention, layer_scores
from vea_engine.inputs import encode_batch

pytestmark = pytest.mark.usefixtures("one_thread")

GLM_FAMILIES = ("glm4v", "glm4v_moe", "glm46v")
QUESTION = "What is written on the red sign?"


@pytest.mark.parametrize("family", GLM_FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_extract_attention_equals_eager_rows_at_every_layer(family, attn, vlm_of, scene_image):
    """Scores = head-mean eager attention of the last prompt token at the image tokens, per layer and averaged."""
    vlm, eager = vlm_of(family, attn), vlm_of(family, "eager")
    batch = encode_batch(vlm, [scene_image], QUESTION)
    ids = batch.inputs["input_ids"][0]  # [N]
    positions = (ids == vlm.model.config.image_token_id).nonzero(as_tuple=True)[0]  # [n]
    with torch.inference_mode():
        out = eager.model(**batch.inputs, use_cache=False, output_attentions=True)
    rows = torch.stack([a.float().mean(1)[0, -1] for a in out.attentions])[:, positions]  # [L, n]
    every = tuple(range(vlm.num_layers))
    scores, geometry, _, _ = layer_scores(vlm, [scene_image], QUESTION, every)  # [L, 1, n]
    assert scores.shape == (vlm.num_layers, 1, positions.numel()) and geometry.n_tokens == positions.numel()
    assert (scores[:, 0] - rows).abs().max().item() <= 1e-5
    for layers in [*((layer,) for layer in every), every, (1, 4)]:
        attention = extract_attention(vlm, [scene_image], QUESTION, layers)
        assert (attention.scores[0] - rows[list(layers)].mean(0)).abs().max().item() <= 1e-5, layers


@pytest.mark.parametrize("family", GLM_FAMILIES)
def test_grid_lies_between_begin_and_end_of_image_and_excludes_them(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    config = vlm.model.config
    batch = encode_batch(vlm, [scene_image], QUESTION)
    ids = batch.inputs["input_ids"][0]  # [N]
    (begin,) = (ids == config.image_start_token_id).nonzero(as_tuple=True)[0].tolist()
    (end,) = (ids == config.image_end_token_id).nonzero(as_tuple=True)[0].tolist()
    assert batch.positions[0].tolist() == list(range(begin + 1, end))
    # 200x150 -> 196x140 (multiples of 28 inside the budget): 7 x 5 tokens of 28 px
    (part,) = batch.geometry.parts
    assert (part.rows, part.cols, batch.geometry.canvas_hw, part.box) == (5, 7, (140, 196), (0, 0, 196, 140))
    layers = (1, 4)
    with planted(vlm, layers, [begin, end]):  # the wrapping tokens take all attention and are not on the grid
        attention = extract_attention(vlm, [scene_image], QUESTION, layers)
    assert attention.scores.sum().item() < 1e-3
    with planted(vlm, layers, [begin + 1, end - 1]):  # the first and last image token: the grid's corners
        attention = extract_attention(vlm, [scene_image], QUESTION, layers)
    grid = attention.geometry.split(attention.scores)[0][0]  # [rows, cols]
    corners = grid[0, 0] + grid[-1, -1]
    assert corners > 0.9 and set(grid.flatten().topk(2).indices.tolist()) == {0, grid.numel() - 1}
