"""Input resolution: ``paper`` (512*512 pixels, the reference's cap), ``checkpoint`` or a pixel count."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vea_engine.loading import apply_resolution, load_vlm, max_pixels_for

PICTURE = Image.fromarray(np.full((768, 1024, 3), 128, dtype=np.uint8))  # 1024 x 768 (W x H)


def _qwen_tokens(processor) -> int:
    """Image tokens the processor gives the 1024x768 picture (2x2 merge of the patch grid)."""
    grid = processor.image_processor(images=[PICTURE], return_tensors="pt")["image_grid_thw"][0]
    return int(grid.prod()) // 4


@pytest.fixture
def qwen_processor(tiny_model_dirs):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dirs["qwen2_5_vl"], local_files_only=True)


# Hand-computed with smart_resize (factor 28): the tiny checkpoint allows 448*448 pixels.
#   paper, 512*512:  beta = sqrt(1024*768 / 262144) = 1.732 -> 420 x 588 px -> 15 x 21 = 315 tokens
#                    (the number for Qwen2.5-VL-7B under the reference's cap)
#   checkpoint:      beta = sqrt(786432 / 200704) = 1.980 -> 364 x 504 px -> 13 x 18 = 234 tokens
#   100000 pixels:   beta = 2.804 -> 252 x 364 px -> 9 x 13 = 117 tokens
@pytest.mark.parametrize(
    ("resolution", "tokens"), [("paper", 315), ("checkpoint", 234), (100_000, 117), ("100000", 117)]
)
def test_qwen_resolution_modes(qwen_processor, resolution, tokens):
    apply_resolution(qwen_processor, "qwen2_5_vl", resolution)
    assert _qwen_tokens(qwen_processor) == tokens
    assert qwen_processor.image_processor.size["shortest_edge"] == 56 * 56  # the lower limit is the checkpoint's


def test_load_vlm_applies_the_paper_cap_by_default(tiny_model_dirs):
    vlm = load_vlm(tiny_model_dirs["qwen2_5_vl"], dtype="float32")
    assert vlm.processor.image_processor.size["longest_edge"] == 512 * 512
    assert vlm.adapter.render(np.asarray(PICTURE)).frame.canvas_hw == (420, 588)
    checkpoint = load_vlm(tiny_model_dirs["qwen2_5_vl"], dtype="float32", resolution="checkpoint")
    assert checkpoint.processor.image_processor.size["longest_edge"] == 448 * 448
    assert checkpoint.adapter.render(np.asarray(PICTURE)).frame.canvas_hw == (364, 504)


def test_fixed_size_families_take_no_pixel_budget(tiny_model_dirs):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dirs["llava"], local_files_only=True)
    before = processor.image_processor.to_dict()
    apply_resolution(processor, "llava", "paper")
    apply_resolution(processor, "llava", "checkpoint")
    assert processor.image_processor.to_dict() == before
    with pytest.raises(ValueError, match="llava processors take no pixel budget.*choose 'paper' or 'checkpoint'"):
        apply_resolution(processor, "llava", 1_000_000)


@pytest.mark.parametrize("bad", ["bogus", 0, -5, 2.5, True, None, "12.5", 2**40])
def test_bad_resolutions_are_refused(bad):
    with pytest.raises(ValueError, match="resolution must be one of \\('paper', 'checkpoint'\\) or a pixel count"):
        max_pixels_for(bad)


def test_a_budget_below_the_processor_minimum_is_refused(qwen_processor):
    with pytest.raises(ValueError, match="below this processor's minimum of 3136 pixels"):
        apply_resolution(qwen_processor, "qwen2_5_vl", 1000)
    with pytest.raises(ValueError, match="resolution must be one of"):
        load_vlm("/nonexistent-but-checked-later", resolution="huge")


def test_older_llava_processor_configs_are_completed_from_the_model_config(tiny_model_dirs, tmp_path, scene_image):
    """Older llava-hf processor configs lack patch_size / vision_feature_select_strategy (``int // None``)."""
    import json
    import shutil

    folder = tmp_path / "llava-old"
    shutil.copytree(tiny_model_dirs["llava"], folder)
    config = json.loads((folder / "processor_config.json").read_text())
    for key in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        config.pop(key)
    (folder / "processor_config.json").write_text(json.dumps(config))
    vlm = load_vlm(folder, dtype="float32")
    assert (vlm.processor.patch_size, vlm.processor.vision_feature_select_strategy) == (14, "default")
    from vea_engine.inputs import encode_batch

    batch = encode_batch(vlm, [scene_image], "What?")
    assert batch.geometry.n_tokens == 36 and batch.positions[0].numel() == 36  # 84 / 14 = 6 x 6 patches, CLS dropped


def test_auto_kernel_is_eager_at_the_paper_resolution_and_sdpa_beyond(tiny_model_dirs):
    """``auto``: the reference's eager kernel under the paper's cap (bit-exact runs), SDPA at other resolutions."""
    from vea_engine.loading import resolve_attn_implementation

    assert [resolve_attn_implementation("auto", r) for r in ("paper", "checkpoint", 10**6)] == ["eager", "sdpa", "sdpa"]
    assert resolve_attn_implementation("flash_attention_2", "paper") == "flash_attention_2"
    paper = load_vlm(tiny_model_dirs["llava"], dtype="float32")
    beyond = load_vlm(tiny_model_dirs["llava"], dtype="float32", resolution="checkpoint")
    assert paper.model.config.get_text_config()._attn_implementation == "eager"
    assert beyond.model.config.get_text_config()._attn_implementation == "sdpa"
