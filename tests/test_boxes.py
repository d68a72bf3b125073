"""Evidence boxes: thresholds, labelling and frames against hand-computed values and scipy; planted attention
on every family (and through a delegate) is recovered as the top box."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from tests.helpers import ALL_FAMILIES
from tests.planting import planted
from tests.test_planted import _global_layers
from vea_engine.align import align_mask
from vea_engine.attribution import extract_attention
from vea_engine.boxes import (
    EvidenceBox,
    attention_boxes,
    box_iou,
    boxes_json,
    boxes_mask,
    core_boxes,
    core_regions,
    crop_boxes,
    draw_boxes,
    evidence_boxes,
    threshold_value,
    token_map,
)
from vea_engine.geometry import Frame
from vea_engine.inputs import encode_batch


def _two_blobs() -> torch.Tensor:
    m = torch.zeros(1, 6, 8)
    m[0, 1:3, 1:3] = torch.tensor([[4.0, 3.0], [3.0, 2.0]])  # mass 12, 4 px
    m[0, 4, 5:8] = torch.tensor([1.0, 2.0, 1.0])  # mass 4, 3 px
    m[0, 5, 0] = 0.5  # below any cut used here
    return m


# ---- thresholds, labelling, scores ------------------------------------------------------------------
def test_relative_threshold_components_and_scores_by_hand():
    m = _two_blobs()  # total mass 16.5
    boxes = evidence_boxes(m, threshold=0.25, min_area=0.0)[0]  # cut 1.0: both blobs, not the 0.5 pixel
    assert [b.box for b in boxes] == [(1, 1, 3, 3), (5, 4, 8, 5)]
    assert [b.score for b in boxes] == pytest.approx([12 / 16.5, 4 / 16.5])
    boxes = evidence_boxes(m, threshold=0.5, min_area=0.0)[0]  # cut 2.0: blob 1 all of it (2 >= 2), blob 2 one px
    assert [b.box for b in boxes] == [(1, 1, 3, 3), (6, 4, 7, 5)]
    assert [b.score for b in boxes] == pytest.approx([12 / 16.5, 2 / 16.5])


def test_mass_threshold_is_the_top_p_cut():
    m = _two_blobs()
    # descending values 4, 3, 3, 2, 2, 1, 1, 0.5 -> cumulative 4, 7, 10, 12, 14, 15, 16, 16.5
    assert threshold_value(m[0].numpy(), "mass", 0.5) == 3.0  # 10 >= 8.25 first at the third value
    assert threshold_value(m[0].numpy(), "mass", 0.95) == 1.0  # 15.675 reached at 16
    assert threshold_value(m[0].numpy(), "mass", 1.0) == 0.5
    assert threshold_value(m[0].numpy(), "relative", 0.5) == 2.0
    assert threshold_value(np.zeros((3, 3)), "mass", 0.5) == np.inf
    boxes = evidence_boxes(m, mode="mass", threshold=0.5, min_area=0.0)[0]
    assert [b.box for b in boxes] == [(1, 1, 3, 3)]  # pixels >= 3: (1,1), (1,2), (2,1): one component
    assert boxes[0].score == pytest.approx(10 / 16.5)


def test_labelling_equals_scipy_with_eight_connectivity():
    rng = np.random.default_rng(3)
    m = torch.from_numpy(rng.random((1, 40, 50)) ** 4)
    boxes = evidence_boxes(m, threshold=0.3, min_area=0.0, max_boxes=1000)[0]
    binary = m[0].numpy() >= 0.3 * float(m.max())
    labels, n = ndimage.label(binary, structure=np.ones((3, 3)))
    assert len(boxes) == n
    expected = {}
    for k, (rows, cols) in enumerate(ndimage.find_objects(labels), 1):
        expected[(cols.start, rows.start, cols.stop, rows.stop)] = m[0].numpy()[labels == k].sum() / m[0].sum().item()
    assert {b.box: pytest.approx(b.score) for b in boxes} == expected
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    diagonal = torch.zeros(1, 4, 4)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = 1.0  # touching corners: one component
    assert [b.box for b in evidence_boxes(diagonal, min_area=0.0)[0]] == [(0, 0, 2, 2)]


def test_min_area_and_max_boxes_keep_the_best():
    m = _two_blobs()
    # 48 px: min_area 4/48 keeps the 4-px blob only; 5/48 drops both but the best stays
    assert [b.box for b in evidence_boxes(m, threshold=0.25, min_area=4 / 48)[0]] == [(1, 1, 3, 3)]
    assert [b.box for b in evidence_boxes(m, threshold=0.25, min_area=5 / 48)[0]] == [(1, 1, 3, 3)]
    assert [b.box for b in evidence_boxes(m, threshold=0.1, min_area=0.0, max_boxes=1)[0]] == [(1, 1, 3, 3)]
    assert [b.box for b in evidence_boxes(torch.zeros(1, 5, 7))[0]] == [(0, 0, 7, 5)]  # nothing positive


def test_frame_carries_boxes_to_original_pixels():
    m = torch.zeros(1, 10, 10)
    m[0, 2:5, 3:7] = 1.0  # canvas box (3, 2, 7, 5)
    squashed = Frame((20, 40), (10, 10), (0, 0, 40, 20))  # x * 4, y * 2
    assert evidence_boxes(m, squashed)[0][0].box == (12, 4, 28, 10)
    cropped = Frame((30, 60), (10, 10), (15.0, 0.0, 45.0, 30.0))  # a centre crop, 3 original px per canvas px
    assert evidence_boxes(m, cropped)[0][0].box == (24, 6, 36, 15)
    outside = Frame((10, 10), (10, 10), (-2.5, -2.5, 12.5, 12.5))  # 1.5 px per canvas px, reaching outside
    edge = torch.zeros(1, 10, 10)
    edge[0, 0:2, 0:2] = 1.0  # canvas (0, 0, 2, 2) -> (-2.5, -2.5, 0.5, 0.5): outwards then clipped
    assert evidence_boxes(edge, outside)[0][0].box == (0, 0, 1, 1)
    with pytest.raises(ValueError, match=r"mask is 10x10 but the frame's canvas is 12x10"):
        evidence_boxes(m, Frame((20, 40), (10, 12), (0, 0, 40, 20)))
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        evidence_boxes(m, threshold=0.0)
    with pytest.raises(ValueError, match=r"mode must be one of \('relative', 'mass'\)"):
        evidence_boxes(m, mode="otsu")


def test_mask_crops_preview_and_json():
    images = torch.rand(2, 20, 30, 3)
    m = torch.zeros(2, 20, 30)
    m[0, 2:6, 4:10] = 1.0
    m[0, 12:16, 20:28] = 0.6  # mass 19.2 < 24
    m[1, 0:20, 0:3] = 1.0
    boxes = evidence_boxes(m, min_area=0.0)
    assert [[b.box for b in image] for image in boxes] == [[(4, 2, 10, 6), (20, 12, 28, 16)], [(0, 0, 3, 20)]]
    union = boxes_mask(boxes, (20, 30))
    assert union.dtype == torch.float32 and torch.equal(union, (m > 0).float())
    crops = crop_boxes(images, boxes)
    assert [tuple(c.shape) for c in crops] == [(1, 4, 6, 3), (1, 4, 8, 3), (1, 20, 3, 3)]
    assert torch.equal(crops[1][0], images[0, 12:16, 20:28])
    preview = draw_boxes(images, boxes)
    assert preview.shape == images.shape
    red = torch.tensor([1.0, 40 / 255, 40 / 255])
    assert torch.allclose(preview[0, 2, 4], red) and torch.allclose(preview[0, 5, 9], red)  # the best box's corners
    assert torch.allclose(preview[0, 0, 0], (images[0, 0, 0] * 255).round() / 255)  # untouched outside
    assert json.loads(boxes_json(boxes))[0][0] == {"box": [4, 2, 10, 6], "score": pytest.approx(24 / (24 + 0.6 * 32))}


def test_core_bounding_boxes_both_ways():
    boxes = [[EvidenceBox((4, 2, 10, 6), 0.75), EvidenceBox((20, 12, 28, 16), 0.25)], [EvidenceBox((0, 0, 3, 20), 1.0)]]
    core = core_boxes(boxes)  # ComfyUI's BOUNDING_BOX: top-left corner and size, one list per image
    assert core == [
        [
            {"x": 4, "y": 2, "width": 6, "height": 4, "score": 0.75},
            {"x": 20, "y": 12, "width": 8, "height": 4, "score": 0.25},
        ],
        [{"x": 0, "y": 0, "width": 3, "height": 20, "score": 1.0}],
    ]
    assert all(type(v) is int for image in core for box in image for k, v in box.items() if k != "score")
    # back: per image the smallest box holding all its boxes
    assert core_regions(core, 2, (20, 30)) == [(4, 2, 28, 16), (0, 0, 3, 20)]
    # one box or one list for every image; a detector's float box rounds outwards; clipped to the image
    assert core_regions({"x": 3.2, "y": 1.7, "width": 5.0, "height": 2.1}, 2, (20, 30)) == [(3, 1, 9, 4)] * 2
    assert core_regions([{"x": -5, "y": 15, "width": 10, "height": 10}], 1, (20, 30)) == [(0, 15, 5, 20)]
    assert core_regions([[{"x": 1, "y": 2, "width": 3, "height": 4}]], 3, (20, 30)) == [(1, 2, 4, 6)] * 3
    for value, message in [
        (core * 2, r"4 lists of boxes for 2 images; give one list, or one per image"),
        ([[], core[1]], r"image 0 has no box"),
        ([[{"x": 1, "y": 2, "width": 3}]], r"each needs finite x, y, width, height"),
        ([[{"x": 1, "y": 2, "width": float("nan"), "height": 4}]], r"each needs finite x, y, width, height"),
        ({"x": 40, "y": 0, "width": 5, "height": 5}, r"cover no pixel of the 30x20 image"),
        ("[[1, 2, 3, 4]]", r"expected bounding boxes .* got str; connect a BOUNDING_BOX output"),
    ]:
        with pytest.raises(ValueError, match=message):
            core_regions(value, 2, (20, 30), "Zoom: bboxes")


# ---- planted attention: every family, and a delegate ------------------------------------------------
def _planted_box(vlm, image, question, part_index: int, centre: bool):
    """Plant a 2x2 block of a grid; returns (attention, the block's box in original pixels as floats)."""
    batch = encode_batch(vlm, [image], question)
    positions, geometry = batch.positions[0], batch.geometry
    part = geometry.parts[part_index]
    r0, c0 = ((part.rows - 2) // 2, (part.cols - 2) // 2) if centre else (part.rows - 2, max(part.cols - 3, 0))
    tokens = [part.token_start + (r0 + dr) * part.cols + c0 + dc for dr in (0, 1) for dc in (0, 1)]
    layers = _global_layers(vlm)
    with planted(vlm, layers, [int(positions[t]) for t in tokens]):
        attention = extract_attention(vlm, [image], question, layers)
    cells = geometry.cell_boxes()[tokens]  # [4, 4] canvas pixels
    H, W = geometry.canvas_hw
    x0, y0 = max(cells[:, 0].min().item(), 0.0), max(cells[:, 1].min().item(), 0.0)
    x1, y1 = min(cells[:, 2].max().item(), W), min(cells[:, 3].max().item(), H)
    fx0, fy0, fx1, fy1 = geometry.frame.box
    sx, sy = (fx1 - fx0) / W, (fy1 - fy0) / H
    return attention, (fx0 + x0 * sx, fy0 + y0 * sy, fx0 + x1 * sx, fy0 + y1 * sy)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_planted_block_is_the_top_box_on_every_family(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    n_parts = len(encode_batch(vlm, [scene_image], "What is it?").geometry.parts)
    for part_index, centre in sorted({(0, True), (n_parts - 1, False)}):
        attention, planted_box = _planted_box(vlm, scene_image, "What does the sign say?", part_index, centre)
        top = attention_boxes(attention)[0][0]  # paper lam, default threshold
        assert box_iou(top.box, planted_box) >= 0.9, (family, part_index, top, planted_box)
        assert top.score > 0.9  # the planted tokens hold almost all the evidence


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("mask_family", "answer_family"), [("qwen2_5_vl", "llava"), ("llava", "internvl")])
def test_delegate_mask_on_another_models_canvas_gives_the_planted_box(mask_family, answer_family, vlm_of, scene_image):
    attention, planted_box = _planted_box(vlm_of(mask_family), scene_image, "What is written?", 0, True)
    answer_vlm = vlm_of(answer_family)
    # the mask model's sharp map, carried to the answering model's canvas (bilinear), boxed with that canvas's frame
    on_target, _ = align_mask(token_map(attention), attention.geometry.frame, [scene_image], answer_vlm)
    target_frame = answer_vlm.adapter.render(np.asarray(scene_image)).frame
    top = evidence_boxes(on_target, target_frame)[0][0]
    # only what the answering model sees can be boxed: LLaVA's centre crop cuts the sides
    visible = (
        max(planted_box[0], target_frame.box[0]),
        max(planted_box[1], target_frame.box[1]),
        min(planted_box[2], target_frame.box[2]),
        min(planted_box[3], target_frame.box[3]),
    )
    assert box_iou(top.box, visible) >= 0.9, (top, visible)
    # and the same mask in original pixels (Align Mask without an answering model) boxes alike
    original, _ = align_mask(token_map(attention), attention.geometry.frame, [scene_image])
    assert box_iou(evidence_boxes(original)[0][0].box, planted_box) >= 0.9


def test_a_mask_of_another_size_without_an_attention_is_one_sentence():
    from vea_engine.boxes import evidence_source

    with pytest.raises(ValueError) as error:
        evidence_source(torch.zeros(1, 448, 448, 3), torch.zeros(1, 30, 40), None, 10.0, "VEA Zoom")
    assert str(error.value) == (
        "VEA Zoom: the mask is 40x30, not the image's 448x448 (W x H); connect the attention the mask was made "
        "from, or align the mask to the original (VEA Align Mask without answer_model)."
    )
