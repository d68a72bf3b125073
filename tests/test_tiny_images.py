"""Images 1-4 px on a side: the channel axis is never guessed, canvases keep their orientation.

Image processors guess the channel axis of numpy arrays, and an ``H x W x 3`` array with
``H`` in {1, 3, 4} looks channels-first to them. Every processor call of the engine passes
PIL images, so such images are read as they are.
"""

from __future__ import annotations

import numpy as np
import pytest

FAMILIES = ["qwen2_5_vl", "llava", "gemma3", "idefics3", "internvl", "llava_next", "paligemma"]
SIZES = [(500, 3), (1, 1), (3, 500), (200, 4), (4, 1)]  # (W, H)


@pytest.fixture(scope="module")
def vlms(tiny_model_dirs):
    from vea_engine.loading import load_vlm

    return {family: load_vlm(tiny_model_dirs[family], dtype="float32") for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_and_thin_images_keep_their_layout(family, vlms):
    from vea_engine.inputs import encode_batch

    vlm = vlms[family]
    rng = np.random.default_rng(11)
    for w, h in SIZES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        batch = encode_batch(vlm, [image], "What?")
        assert batch.positions[0].numel() == batch.geometry.n_tokens, (family, w, h)
        canvas = batch.canvases[0]
        assert canvas.frame.original_hw == (h, w)
        again = encode_batch(vlm, [canvas.pixels], "What?")  # the canvas round-trips: same grids
        grids = [(p.rows, p.cols) for p in batch.geometry.parts]
        assert [(p.rows, p.cols) for p in again.geometry.parts] == grids, (family, w, h)
        assert again.geometry.canvas_hw == canvas.frame.canvas_hw, (family, w, h)


def test_a_wide_thin_image_renders_landscape_on_idefics3(vlms):
    """500 x 3 px: tiled as a wide image (the processor's own reading), the canvas is wider than tall."""
    from vea_engine.inputs import encode_batch

    image = np.random.default_rng(5).integers(0, 256, (3, 500, 3), dtype=np.uint8)
    batch = encode_batch(vlms["idefics3"], [image], "What?")
    h, w = batch.geometry.canvas_hw
    assert w > h
