"""Plant attention on chosen image tokens; the evidence map must peak on their pixel boxes.

For every family, on a 2x2 block of every grid (every tile of tiled families). The
planting is done in the model itself, independent of the capture code
(see ``tests/planting.py``).
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import ALL_FAMILIES
from tests.planting import planted
from vea_engine.attribution import evidence_map, extract_attention
from vea_engine.inputs import encode_batch
from vea_engine.mask import paint

pytestmark = pytest.mark.usefixtures("one_thread")


def _global_layers(vlm) -> tuple[int, int]:
    """Two decoder layers whose last query row can see every image token (no sliding window there)."""
    types = getattr(vlm.model.config.get_text_config(), "layer_types", None) or ["full_attention"] * vlm.num_layers
    full = [i for i, t in enumerate(types) if t == "full_attention" and 0 < i < vlm.num_layers]
    return (full[0], full[-1]) if len(full) > 1 else (1, vlm.num_layers - 2)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_planted_attention_peaks_on_every_grid(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    question = "What does the sign say?"
    batch = encode_batch(vlm, [scene_image], question)
    positions, geometry = batch.positions[0], batch.geometry
    boxes = geometry.cell_boxes()  # [n_tokens, 4] canvas pixels
    layers = _global_layers(vlm)
    H, W = geometry.canvas_hw
    for index, part in enumerate(geometry.parts):
        # the cell rows / columns that start on the canvas (tiles padded past the image reach beyond it: Llama 4)
        cells = boxes[part.token_start : part.token_start + part.n_tokens].view(part.rows, part.cols, 4)
        rows_on, cols_on = int((cells[:, 0, 1] < H).sum()), int((cells[0, :, 0] < W).sum())
        assert rows_on >= 2 and cols_on >= 2, "every grid must hold a 2x2 block on the canvas"
        # a 2x2 block of cells away from the top-left corner
        r0, c0 = rows_on - 2, max(cols_on - 3, 0)
        tokens = [part.token_start + (r0 + dr) * part.cols + c0 + dc for dr in (0, 1) for dc in (0, 1)]
        with planted(vlm, layers, [int(positions[t]) for t in tokens]):
            attention = extract_attention(vlm, [scene_image], question, layers)
        scores = attention.scores[0]
        assert attention.geometry == geometry
        assert scores[tokens].sum() > 0.9, f"part {index}: planted tokens must take almost all attention"
        assert set(scores.topk(len(tokens)).indices.tolist()) == set(tokens), f"part {index}"

        x0, y0 = boxes[tokens, 0].min().item(), boxes[tokens, 1].min().item()
        x1, y1 = boxes[tokens, 2].max().item(), boxes[tokens, 3].max().item()
        # no smoothing: every pixel of the planted boxes is above every other pixel, and the peak (1.0) is inside
        sharp = evidence_map(attention, apply_smooth=False)[0]
        marked = torch.zeros(1, geometry.n_tokens)
        marked[0, tokens] = 1.0
        inside = paint(geometry.split(marked)[index], geometry.canvas_hw, part.box)[0] > 0  # the block's pixels
        assert sharp[inside].min() > sharp[~inside].max(), f"part {index}: the map does not peak on the block"
        assert sharp[inside].max() == 1.0 and sharp[~inside].max() < 0.05, f"part {index}"
        # denoised and smoothed (sigma 10% of the shorter side; the paper's 50% blur spans the whole canvas and
        # reflection pulls its peak towards the nearest border): the peak lies in the planted region
        smooth = evidence_map(attention, sigma=0.1)[0]
        assert smooth.shape == geometry.canvas_hw
        py, px = divmod(int(smooth.argmax()), smooth.shape[1])
        assert x0 <= px < x1 and y0 <= py < y1, f"part {index}: smoothed peak outside the block"
