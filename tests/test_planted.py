"""Plant attention on chosen image tokens; the evidence map must peak on their pixel boxes.

The planting is done in the model itself, independent of the capture code
(see ``tests/planting.py``).
"""

from __future__ import annotations

import pytest
import torch

from conftest import ENGINE_FAMILIES
from tests.planting import planted
from vea_engine.attribution import evidence_map, extract_attention
from vea_engine.inputs import encode_batch


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_planted_attention_peaks_on_matching_pixel_box(family, tiny_vlms, scene_image):
    vlm = tiny_vlms[family]
    question = "What does the sign say?"
    batch = encode_batch(vlm, [scene_image], question)
    positions, geometry = batch.positions[0], batch.geometry
    rows, cols = geometry.parts[0].rows, geometry.parts[0].cols
    assert rows >= 3 and cols >= 3, "the tiny model's grid must be big enough to locate a block"
    # a 2x2 block of cells away from the top-left corner
    r0, c0 = rows - 2, cols // 2
    cells = [(r0 + dr, c0 + dc) for dr in (0, 1) for dc in (0, 1) if c0 + dc < cols]
    tokens = [r * cols + c for r, c in cells]
    layers = (1, vlm.num_layers - 2)
    with planted(vlm, layers, [int(positions[t]) for t in tokens]):
        attention = extract_attention(vlm, [scene_image], question, layers)
    scores = attention.scores[0]
    assert scores[tokens].sum() > 0.9, "planted tokens must take almost all attention"
    assert set(scores.topk(len(tokens)).indices.tolist()) == set(tokens)

    boxes = geometry.cell_boxes()[tokens]
    x0, y0 = boxes[:, 0].min().item(), boxes[:, 1].min().item()
    x1, y1 = boxes[:, 2].max().item(), boxes[:, 3].max().item()
    # no smoothing: every pixel of the planted boxes is above every other pixel, and the peak (1.0) is inside
    sharp = evidence_map(attention, apply_smooth=False)[0]
    inside = torch.zeros_like(sharp, dtype=torch.bool)
    inside[int(y0) : int(y1), int(x0) : int(x1)] = True
    assert sharp[inside].min() > sharp[~inside].max()
    assert sharp[inside].max() == 1.0 and sharp[~inside].max() < 0.05
    # denoised and smoothed (sigma 10% of the shorter side; the paper's 50% blur spans the whole canvas and
    # reflection pulls its peak towards the nearest border): the peak lies in the planted region
    smooth = evidence_map(attention, sigma=0.1)[0]
    peak = int(smooth.argmax())
    py, px = divmod(peak, smooth.shape[1])
    assert x0 <= px < x1 and y0 <= py < y1
    assert smooth.shape == geometry.canvas_hw
