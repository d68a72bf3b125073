"""Attention-guided zoom: window sizes and the exact window search against brute force, crops of the
original, planted evidence inside the window on every family (and through a delegate), and the answers
against the processor called by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ALL_FAMILIES
from tests.test_boxes import _planted_box
from vea_engine.align import align_mask
from vea_engine.answering import answer
from vea_engine.attribution import evidence_map
from vea_engine.boxes import token_map
from vea_engine.config import build_prompt
from vea_engine.inputs import encode_batch
from vea_engine.zoom import (
    ZOOM_PREFIX,
    Window,
    answer_zoomed,
    best_window,
    crop_windows,
    evidence_on_original,
    multi_image_model_types,
    upscale_crop,
    window_sizes,
    zoom_answer,
    zoom_prompt,
    zoom_windows,
)


def test_window_sizes_by_hand():
    # a 2000x3000 image holds 2 input sides within 60% of its sides: sides 512 * (1, 1.25, 1.5, 1.75, 2), as in ViCrop
    assert window_sizes((2000, 3000), 512) == [(512, 512), (640, 640), (768, 768), (896, 896), (1024, 1024)]
    # the 448x448 example, 512-px input: base 0.6 * 448 / 2 = 134.4; sides 134.4, 168, 201.6, 235.2, 268.8,
    # the last clamped to floor(0.6 * 448) = 268
    assert window_sizes((448, 448), 512) == [(134, 134), (168, 168), (202, 202), (235, 235), (268, 268)]
    # 150x200, 84-px input: base min(84, 0.6 * 150 / 2) = 45; sides 45, 56.25, 67.5, 78.75, 90
    assert window_sizes((150, 200), 84) == [(45, 45), (56, 56), (68, 68), (79, 79), (90, 90)]
    # aspect 2: base 0.6 * min(200 / sqrt 2, 150 * sqrt 2) / 2 = 42.43; w = s * sqrt(2), h = s / sqrt(2)
    assert window_sizes((150, 200), 100, 1.0, 2.0, 2, 2.0) == [(30, 60), (60, 120)]
    assert window_sizes((40, 60), 512) == [(12, 12), (15, 15), (18, 18), (21, 21), (24, 24)]  # 30% to 60%
    # max_share 1: base min(84, 150 / 2) = 75; sides 75, 93.75, 112.5, 131.25, 150
    assert window_sizes((150, 200), 84, max_share=1.0) == [(75, 75), (94, 94), (112, 112), (131, 131), (150, 150)]
    assert window_sizes((1, 5), 512) == [(1, 1)]  # a 1-px side cannot hold a smaller window
    with pytest.raises(ValueError, match=r"0 < min_scale <= max_scale, got 2.0..1.0"):
        window_sizes((150, 200), 84, 2.0, 1.0)
    with pytest.raises(ValueError, match=r"aspect \(width / height\) must be in \[0.1, 10\]"):
        window_sizes((150, 200), 84, aspect=0.0)
    with pytest.raises(ValueError, match=r"max_share must be in \(0, 1\], got 1.5; 0.6 is the default"):
        window_sizes((150, 200), 84, max_share=1.5)


def test_local_evidence_on_an_image_under_two_input_sides_is_zoomed_on():
    m = torch.zeros(1, 448, 448)  # the example's size; a 512-px input side (Qwen at the paper's budget)
    m[0, 100:140, 300:340] = 1.0  # 40 px of evidence at x 300..340, y 100..140
    # sizes 134..268 (test_window_sizes_by_hand): the smallest, 134, holds it; 134-px windows holding it start
    # at x 206..300, y 6..100: the middle is (253, 53)
    assert zoom_windows(m, 512)[0] == Window((253, 53, 387, 187), 1.0)
    spread = torch.zeros(1, 448, 448)
    spread[0, 20:420, 20:420] = 1.0  # evidence over most of the image: the largest window, still inside
    (window,) = zoom_windows(spread, 512)
    x0, y0, x1, y1 = window.box
    assert (x1 - x0, y1 - y0) == (268, 268) and 0 < x0 and x1 < 448


def test_small_crops_are_upscaled_to_the_input_side():
    crop = np.random.default_rng(3).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    up = upscale_crop(crop, 512)  # longer side 90 -> 512; 60 * 512 / 90 = 341.3 -> 341
    assert up.shape == (341, 512, 3)
    assert np.array_equal(up, np.asarray(Image.fromarray(crop).resize((512, 341), Image.Resampling.BICUBIC)))
    assert upscale_crop(crop, 90) is crop and upscale_crop(crop, 64) is crop  # as large as the input side already


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_input_side_is_what_the_vision_tower_sees_at_once(family, vlm_of):
    adapter = vlm_of(family).adapter
    canvas = adapter.render(np.zeros((300, 300, 3), dtype=np.uint8)).frame.canvas_hw
    if adapter.family in ("qwen_vl", "qwen3_vl", "glm4v", "qwen3_5"):
        assert adapter.input_side == 512  # sqrt of the paper's 512 * 512 pixel budget
    elif adapter.family in ("llava", "gemma3", "paligemma", "mistral3", "gemma4"):
        assert (
            adapter.input_side == canvas[0] == canvas[1]
        )  # the fixed square input (Mistral 3: the longest side; Gemma 4: of a square image)
    elif adapter.family == "lfm2_vl":  # the canvas is the original; large images are cut into tiles
        assert canvas == (300, 300) and adapter.input_side == adapter.processor.image_processor.tile_size
    else:  # tiled: the tile side (a square image is a whole number of tiles)
        assert canvas[0] % adapter.input_side == 0 and canvas[0] // adapter.input_side >= 2, (canvas, family)
        assert adapter.input_side == adapter.tile


def _brute_force(m: np.ndarray, sizes, floor: float = 0.5, tolerance: float = 1e-3) -> Window:
    """The same rule, every window summed directly (no integral image)."""
    above = np.clip(m - floor * m.max(), 0, None)
    sums = {}
    for h, w in sizes:
        sums[h, w] = np.array(
            [[above[y : y + h, x : x + w].sum() for x in range(m.shape[1] - w + 1)] for y in range(m.shape[0] - h + 1)]
        )
    cut = (1 - tolerance) * max(s.max() for s in sums.values())
    for h, w in sizes:
        ys, xs = np.nonzero(sums[h, w] >= cut)
        if len(ys):
            y0, x0 = int(np.median(ys).round()), int(np.median(xs).round())
            if sums[h, w][y0, x0] < cut:
                y0, x0 = np.unravel_index(sums[h, w].argmax(), sums[h, w].shape)
            return Window((int(x0), int(y0), int(x0) + w, int(y0) + h), float(sums[h, w][y0, x0] / above.sum()))
    raise AssertionError


def test_window_search_equals_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(6):
        m = rng.random((23, 31)) ** 3
        m[rng.integers(0, 18) :][:5, rng.integers(0, 25) :][:, :6] += 2.0  # a bright patch somewhere
        sizes = window_sizes(m.shape, 6 + trial, 1.0, 2.0, 4, [1.0, 1.5, 0.7][trial % 3])
        found, expected = best_window(m, sizes), _brute_force(m, sizes)
        assert found.box == expected.box and found.score == pytest.approx(expected.score), trial


def test_window_centres_the_evidence_and_takes_the_smallest_size_that_holds_it():
    m = torch.zeros(1, 30, 40)
    m[0, 10:14, 5:9] = 1.0  # a 4x4 block at x 5..9, y 10..14
    # 6x6 windows that hold it start at x 3..5, y 8..10: the middle is (4, 9)
    assert zoom_windows(m, 6, 1.0, 2.0, 3)[0] == Window((4, 9, 10, 15), 1.0)
    wide = torch.zeros(1, 30, 40)
    wide[0, 10:14, 5:15] = 1.0  # 10 wide: only the 12x12 size (of 6, 9, 12) holds it all
    assert zoom_windows(wide, 6, 1.0, 2.0, 3)[0] == Window((4, 6, 16, 18), 1.0)
    flat = torch.full((1, 30, 40), 0.3)  # no evidence: the centred smallest window
    assert zoom_windows(flat, 6)[0] == Window((17, 12, 23, 18), 0.0)


def test_crop_windows_are_the_original_pixels():
    images = torch.rand(2, 30, 40, 3)
    windows = [Window((4, 9, 10, 15), 1.0), Window((0, 0, 40, 30), 0.5)]
    crops = crop_windows(images, windows)
    assert [c.shape for c in crops] == [(6, 6, 3), (30, 40, 3)]
    expected = (images[0, 9:15, 4:10] * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(crops[0], expected)
    with pytest.raises(ValueError, match=r"window \(30, 0, 50, 10\) does not lie in a 40x30 image"):
        crop_windows(images[:1], [Window((30, 0, 50, 10), 1.0)])


def _contains(window: tuple, box: tuple) -> bool:
    return (
        window[0] <= box[0] + 1e-6
        and window[1] <= box[1] + 1e-6
        and window[2] >= box[2] - 1e-6
        and (window[3] >= box[3] - 1e-6)
    )


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_planted_block_lies_in_the_zoom_window_on_every_family(family, vlm_of, scene_image):
    """The window holds the planted 2x2 token block, or as much of it as a window can: along each axis it
    covers the block where the block fits (coarse grids make blocks of up to 133 px, windows here are 45 to
    90 px: 60% of 150), and lies inside it where it does not; on the paper's smoothed map (a blob over most of
    the image) the window holds the block's centre."""
    vlm = vlm_of(family)
    n_parts = len(encode_batch(vlm, [scene_image], "What is it?").geometry.parts)
    side = vlm.adapter.input_side
    for part_index, centre in sorted({(0, True), (n_parts - 1, False)}):
        attention, planted_box = _planted_box(vlm, scene_image, "What does the sign say?", part_index, centre)
        frame = attention.geometry.frame
        sharp = zoom_windows(evidence_on_original(token_map(attention), frame), side)[0].box
        smooth = zoom_windows(evidence_on_original(evidence_map(attention), frame), side)[0].box
        for window in (sharp, smooth):
            h, w = window[3] - window[1], window[2] - window[0]
            assert min(side, 45) <= h <= min(2 * side, 90) and min(side, 45) <= w <= min(2 * side, 120)
        for axis in (0, 1):  # x, then y
            lo, hi, block_lo, block_hi = sharp[axis], sharp[axis + 2], planted_box[axis], planted_box[axis + 2]
            if block_hi - block_lo <= hi - lo:
                assert lo <= block_lo + 1 and hi >= block_hi - 1, (family, part_index, sharp, planted_box)
            else:
                assert block_lo - 1 <= lo and hi <= block_hi + 1, (family, part_index, sharp, planted_box)
        cx, cy = (planted_box[0] + planted_box[2]) / 2, (planted_box[1] + planted_box[3]) / 2
        assert smooth[0] <= cx <= smooth[2] and smooth[1] <= cy <= smooth[3], (family, part_index, smooth, planted_box)


@pytest.mark.usefixtures("one_thread")
def test_delegate_mask_zooms_on_the_planted_block(vlm_of, scene_image):
    attention, planted_box = _planted_box(vlm_of("qwen2_5_vl"), scene_image, "What is written?", 0, True)
    answer_vlm = vlm_of("llava")  # its canvas is a centre crop; the mask travels through both frames
    on_target, _ = align_mask(token_map(attention), attention.geometry.frame, [scene_image], answer_vlm)
    target_frame = answer_vlm.adapter.render(np.asarray(scene_image)).frame
    window = zoom_windows(evidence_on_original(on_target, target_frame), answer_vlm.adapter.input_side)[0]
    x0, y0, x1, y1 = planted_box  # the part LLaVA's centre crop shows
    visible = (
        max(x0, target_frame.box[0]),
        max(y0, target_frame.box[1]),
        min(x1, target_frame.box[2]),
        min(y1, target_frame.box[3]),
    )
    assert _contains(window.box, visible), (window, visible)


def test_multi_image_families_are_the_documented_ones():
    assert multi_image_model_types() == sorted(
        ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe", "llava_onevision", "gemma3"]
        + ["gemma4", "idefics3", "smolvlm", "internvl", "llama4", "glm4v", "glm4v_moe", "glm46v", "mistral3", "lfm2_vl"]
    )
    assert zoom_prompt("What is the total?") == ZOOM_PREFIX + build_prompt("What is the total?", "qa")
    assert zoom_prompt("Why?", "vea").startswith(ZOOM_PREFIX) and zoom_prompt("Why?", "vea").endswith("Question: Why?")
    with pytest.raises(ValueError, match=r"prompt_style must be one of \('qa', 'vea'\)"):
        zoom_prompt("Why?", "custom")


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", ["qwen2_5_vl", "gemma3"])
def test_zoomed_answers_equal_the_processor_called_by_hand(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    original = np.asarray(scene_image)
    crops = [original[40:120, 100:180], original[10:70, 20:110]]  # two crop sizes: two generate calls
    questions = ["What is red?", "What is here?"]
    got = answer_zoomed(vlm, [original, original], crops, questions, max_new_tokens=3)
    for crop, question, text in zip(crops, questions, got, strict=True):
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": ZOOM_PREFIX + build_prompt(question)}]
        chat = vlm.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        extra = {"add_special_tokens": False} if chat.startswith(vlm.processor.tokenizer.bos_token or "\0") else {}
        shown, (h, w), side = Image.fromarray(crop), crop.shape[:2], vlm.adapter.input_side
        if max(h, w) < side:  # the crop reaches the model with its longer side at the input side (bicubic)
            shown = shown.resize((round(w * side / max(h, w)), round(h * side / max(h, w))), Image.Resampling.BICUBIC)
        inputs = vlm.processor(text=[chat], images=[[Image.fromarray(original), shown]], return_tensors="pt", **extra)
        ids = vlm.model.generate(**inputs, max_new_tokens=3, do_sample=False)[:, inputs["input_ids"].shape[1] :]
        assert text == vlm.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()


@pytest.mark.usefixtures("one_thread")
def test_single_image_families_answer_on_the_crop_alone(vlm_of, scene_image):
    vlm = vlm_of("llava")
    assert not vlm.adapter.multi_image
    original = np.asarray(scene_image)
    crops = [original[40:120, 100:180]]  # 80 px: upscaled to the input side, as the crop alone is answered
    side = vlm.adapter.input_side
    shown = (
        np.asarray(Image.fromarray(crops[0]).resize((side, side), Image.Resampling.BICUBIC)) if side > 80 else crops[0]
    )
    assert answer_zoomed(vlm, [original], crops, "What is red?", max_new_tokens=3) == answer(
        vlm, [shown], "What is red?", "qa", max_new_tokens=3
    )


@pytest.mark.usefixtures("one_thread")
def test_zoom_answer_on_given_windows_crops_exactly_there(vlm_of, scene_image):
    vlm = vlm_of("llava")  # one image per prompt: the crop alone, with the qa prompt
    original = np.asarray(scene_image)
    images = torch.from_numpy(np.stack([original] * 2)).float() / 255.0  # [2, 150, 200, 3]
    given = [(120, 40, 170, 80), (0, 10, 30, 150)]
    result = zoom_answer(vlm, images, "What is red?", None, windows=given, max_new_tokens=2)
    assert result.windows == [Window(given[0], None), Window(given[1], None)]
    assert np.array_equal(result.crops[0], original[40:80, 120:170]) and result.crops[1].shape == (140, 30, 3)
    assert json.loads(result.windows_json()) == [{"box": list(box), "score": None} for box in given]
    assert result.answers == answer(vlm, result.crops, "What is red?", "qa", max_new_tokens=2)


@pytest.mark.usefixtures("one_thread")
def test_zoom_answer_end_to_end_with_a_mask_in_original_pixels(vlm_of, scene_image):
    vlm = vlm_of("internvl")
    images = torch.from_numpy(np.stack([np.asarray(scene_image)] * 2)).float() / 255.0  # [2, 150, 200, 3]
    mask = torch.zeros(2, 150, 200)
    mask[0, 40:80, 120:170] = 1.0  # the red sign
    mask[1, 5:30, 10:40] = 1.0
    result = zoom_answer(vlm, images, "What is red?", mask, max_new_tokens=2)
    # input side 112, but 0.6 * 150 / 2 = 45 < 112: sides 45, 56.25, 67.5, 78.75, 90 -> 45, 56, 68, 79, 90
    # x 120..170, y 40..80 (50 x 40) fits whole in 56: windows start at x 114..120, y 24..40: the middle (117, 32);
    # x 10..40, y 5..30 fits in 45: x 0..10, y 0..5 -> (5, 2) (numpy rounds the median 2.5 to even)
    assert [w.box for w in result.windows] == [(117, 32, 173, 88), (5, 2, 50, 47)]
    assert [crop.shape for crop in result.crops] == [(56, 56, 3), (45, 45, 3)]
    for window, crop in zip(result.windows, result.crops, strict=True):
        x0, y0, x1, y1 = window.box
        assert np.array_equal(crop, (images[0, y0:y1, x0:x1] * 255).round().to(torch.uint8).numpy())
    assert len(result.answers) == 2 and all(isinstance(a, str) for a in result.answers)
    assert [entry["box"] for entry in json.loads(result.windows_json())] == [list(w.box) for w in result.windows]
    with pytest.raises(ValueError, match=r"the evidence is 100x50 in original pixels but the images are 200x150"):
        zoom_answer(vlm, images, "What?", torch.zeros(2, 50, 100))
