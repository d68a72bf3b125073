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


# (family, W, H, the processor's limit in words) for images beyond a processor's limit: the message names the
# image's size, the limit and two fixes, checked against the processor itself below
LIMITS = [
    ("qwen2_5_vl", 8000, 8, "qwen_vl's processor takes aspect ratios up to 200:1"),
    ("qwen3_vl", 8, 8000, "qwen3_vl's processor takes aspect ratios up to 200:1"),
    ("glm4v", 4096, 16, "glm4v's processor takes aspect ratios up to 200:1"),
    ("mistral3", 600, 3, "mistral3's processor scales the long side to 168 px, leaving the short side under 1 px"),
    ("lfm2_vl", 16, 4096, "lfm2_vl's processor would cut 256 patches from its thumbnail, more than its 64"),
]
# hand-computed fixes: 200:1 -> 8000 / 200 = 40 and 8 * 200 = 1600; ceil(4096 / 200) = 21 and 16 * 200 = 3200;
# Mistral 3 (L = 168) keeps floor(short * 168 / long) >= 1: short >= 600 / 168 = 3.6 -> 4, long <= 3 * 168 = 504
FIXES = {"qwen2_5_vl": ("8000x40", "1600x8"), "qwen3_vl": ("40x8000", "8x1600"), "glm4v": ("4096x21", "3200x16"),
         "mistral3": ("600x4", "504x3")}  # fmt: skip


@pytest.mark.parametrize(("family", "w", "h", "limit"), LIMITS)
def test_an_image_beyond_the_processors_limit_gets_its_size_the_limit_and_the_fix(family, w, h, limit, vlm_of):
    import re

    from PIL import Image

    from vea_engine.inputs import check_image_sizes, encode_batch

    vlm = vlm_of(family)
    image = np.zeros((h, w, 3), dtype=np.uint8)
    with pytest.raises(ValueError) as error:
        encode_batch(vlm, [image], "What?")  # refused before the processor raises its own text
    message = str(error.value)
    ratio = f"{max(w, h) / min(w, h):.4g}"
    assert message.startswith(f"image: the image is {w}x{h} (W x H), an aspect ratio of {ratio}:1, but {limit}; pad")
    assert len(message) <= 300 and message.endswith("(W x H).")
    padded, cropped = re.search(r"pad it to (\d+x\d+) or crop it to (\d+x\d+) \(W x H\)", message).groups()
    if family in FIXES:
        assert (padded, cropped) == FIXES[family]
    for size, grow in ((padded, -1), (cropped, +1)):  # each fix is the processor's own limit: one pixel more fails
        fw, fh = (int(v) for v in size.split("x"))
        vlm.adapter.encode([Image.new("RGB", (fw, fh))], ["What?"])  # the processor takes it
        short_w = (w < h) == (size == padded)  # the axis the fix changed: the short side is padded
        beyond = (fw + grow, fh) if short_w else (fw, fh + grow)
        with pytest.raises(Exception):  # noqa: B017 -- transformers' own error, whatever its type
            vlm.adapter.encode([Image.new("RGB", beyond)], ["What?"])
    with pytest.raises(ValueError, match=r"^VEA Zoom: crop: the image is"):
        check_image_sizes(vlm.adapter, [image], "VEA Zoom: crop")
    check_image_sizes(vlm_of("gemma4").adapter, [image])  # a processor without such a limit takes it
