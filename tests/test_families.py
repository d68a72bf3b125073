"""Every VLM family beyond LLaVA-1.5 / Qwen2-VL / Qwen2.5-VL, on tiny real-architecture checkpoints.

For each family:

* **the token -> pixel-box map is right, checked against the model itself**: with
  the vision encoder layers short-circuited (each visual token then depends on
  its own pixels only), changing the pixels of one token's canvas box changes
  exactly that token among the grids that show the canvas unresampled, and the
  most-changed token of every grid covers the changed pixels;
* the canvas is stable: encoding the rendered (or highlighted) canvas gives the
  same token layout as the attribution pass of the original.

Tests that run on every family live with their subject: capture == eager in
``test_capture.py``, planted attention on every grid in ``test_planted.py``, the CLI
in ``test_pipeline.py``.

Plus delegates across families (Qwen2.5-VL -> LLaVA-NeXT, LLaVA-1.5 -> Gemma 3, GLM-4.1V <-> LLaVA-1.5),
and the canvases of LLaVA-NeXT / OneVision / Idefics3 / SmolVLM / InternVL over
many image sizes with the released configs (pure geometry, no model).
"""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import ALL_FAMILIES, NEW_FAMILIES
from vea_engine.answering import answer
from vea_engine.attribution import evidence_map, extract_attention
from vea_engine.config import build_prompt
from vea_engine.decoder import text_decoder as _text_model
from vea_engine.geometry import Frame, mask_from_original, remap_mask
from vea_engine.inputs import encode_batch, model_inputs, render_canvases
from vea_engine.pipeline import align_mask, run_vea

#: grids (part indices) whose pixels are the canvas itself, not a resampled copy of it
EXACT_PARTS = {
    "gemma3": {0},
    "llava_next": {1},
    "qwen3_vl": {0},
    "qwen3_5": {0},
    "qwen3_5_moe": {0},
    "llava_onevision": set(),  # its large tile grid is shrunk by interpolation
    "idefics3": {0, 1, 2, 3},  # the tiles; the last grid is the global image
    "smolvlm": {0, 1, 2, 3},
    "internvl": {0, 1, 2, 3},  # the tiles; the last grid is the thumbnail
    "paligemma": {0},
    "llama4": {0, 1, 2, 3},  # the tiles; the last grid is the global view
    "glm4v": {0},
    "glm4v_moe": {0},
    "glm46v": {0},
    "mistral3": {0},
    "lfm2_vl": set(),  # the canvas is the original: every grid is a resampled copy of it
    "gemma4": {0},
}

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(vlm, images, questions):
    """The attribution pass's inputs (the originals, encoded) and their geometry."""
    batch = encode_batch(vlm, images, questions)
    return batch.inputs, batch.geometry


# -- token -> pixel box, checked against the model ----------------------------------------


@contextmanager
def _local_vision(model):
    """Short-circuit every vision-encoder layer: each visual token then depends on its own pixels only."""
    text_modules = {id(m) for m in _text_model(model).modules()}
    handles = []

    def identity(module, args, kwargs, output):
        hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("hidden_state"))  # Llama 4: hidden_state
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    for module in model.modules():
        if id(module) in text_modules or not isinstance(module, torch.nn.ModuleList) or not len(module):
            continue
        if any(key in type(module[0]).__name__ for key in ("EncoderLayer", "Block", "Layer")):
            # prepend: transformers records per-layer hidden states with hooks of its own; they must see ours
            handles += [layer.register_forward_hook(identity, with_kwargs=True, prepend=True) for layer in module]
    assert handles, "no vision encoder layers found"
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _image_embeddings(vlm, canvas):
    """The decoder's input vectors at the image tokens (token order), ``[n_tokens, D]``, of the canvas encoded."""
    inputs = model_inputs(vlm, [canvas], [build_prompt("What?")])
    geometry = vlm.adapter.token_layout(inputs, 0, Frame.whole(canvas.shape[:2], canvas.shape[:2]))
    positions = vlm.adapter.image_token_positions(inputs["input_ids"], [geometry])[0]
    return _image_embeddings_all(vlm, inputs)[positions], geometry


def _intersects(boxes, box, margin=0.0):
    x0, y0, x1, y1 = box
    horizontal = (boxes[:, 0] < x1 + margin) & (boxes[:, 2] > x0 - margin)
    return horizontal & (boxes[:, 1] < y1 + margin) & (boxes[:, 3] > y0 - margin)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_token_boxes_match_the_pixels_each_token_sees(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    canvas = render_canvases(vlm, [scene_image])[0].pixels
    with _local_vision(vlm.model):
        reference, geometry = _image_embeddings(vlm, canvas)
        assert reference.shape[0] == geometry.n_tokens
        boxes = geometry.cell_boxes()  # [n, 4] canvas pixels
        H, W = canvas.shape[:2]
        for target_part, part in enumerate(geometry.parts):
            # a cell that starts on the canvas (tiles padded past the image reach beyond it: Llama 4)
            cells = boxes[part.token_start : part.token_start + part.n_tokens].view(part.rows, part.cols, 4)
            rows_on, cols_on = int((cells[:, 0, 1] < H).sum()), int((cells[0, :, 0] < W).sum())
            token = part.token_start + (rows_on * 2 // 3) * part.cols + cols_on * 2 // 3
            x0, y0, x1, y1 = boxes[token].tolist()
            ys, xs = slice(int(np.ceil(y0)), int(y1)), slice(int(np.ceil(x0)), int(x1))
            changed = canvas.copy()
            changed[ys, xs] = 255 - changed[ys, xs]
            delta = (_image_embeddings(vlm, changed)[0] - reference).abs().amax(-1)  # [n]
            hit = (xs.start, ys.start, xs.stop, ys.stop)
            for index, other in enumerate(geometry.parts):
                span = slice(other.token_start, other.token_start + other.n_tokens)
                moved = delta[span] > 1e-5
                if not moved.any():  # a grid that does not show the changed pixels (another tile)
                    assert not _intersects(boxes[span], hit).any(), f"part {index} covers the pixels but did not change"
                    continue
                top = other.token_start + int(delta[span].argmax())
                # a resampled copy's resize kernel reaches one source pixel past the changed ones (LFM2-VL's tiles)
                reach = 0.0 if index in EXACT_PARTS[family] else 1.0
                assert _intersects(boxes[top : top + 1], hit, margin=reach)[0], (
                    f"part {index}: most-changed token elsewhere"
                )
                if index == target_part:
                    assert top == token
                if index in EXACT_PARTS[family]:
                    assert torch.equal(moved, _intersects(boxes[span], hit)), f"part {index}: wrong tokens changed"
                else:  # resampled copies: changes stay within one cell of the changed pixels
                    cell = max((other.box[2] - other.box[0]) / other.cols, (other.box[3] - other.box[1]) / other.rows)
                    assert bool(_intersects(boxes[span][moved], hit, margin=cell).all())


# -- canvas stability, end to end ---------------------------------------------------------


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_canvas_is_tiled_like_the_original(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    layer = vlm.layer_kinds.attention[1:2]  # layer 1 of a plain decoder, a softmax layer of a hybrid one
    first = extract_attention(vlm, [scene_image], "What?", layer)
    again = extract_attention(vlm, first.canvas, "What?", layer)  # e.g. the highlighted canvas
    grids = [(p.token_start, p.rows, p.cols) for p in first.geometry.parts]
    assert [(p.token_start, p.rows, p.cols) for p in again.geometry.parts] == grids
    assert again.geometry.canvas_hw == first.geometry.canvas_hw == first.canvas.shape[1:3]
    for fed_back, original in zip(again.geometry.parts, first.geometry.parts, strict=True):
        # the same pixels; LLaVA-NeXT's base grid shows the resized original, up to one cell past the canvas
        cell = max(
            (original.box[2] - original.box[0]) / original.cols, (original.box[3] - original.box[1]) / original.rows
        )
        assert max(abs(a - b) for a, b in zip(fed_back.box, original.box, strict=True)) <= (
            cell if family == "llava_next" else 0
        )
    assert (again.canvas - first.canvas).abs().max() <= 1 / 255 + 1e-6
    # the canvas shows the original image: the region it covers overlaps the original almost entirely
    x0, y0, x1, y1 = first.geometry.canvas_in_original
    overlap = (min(x1, 200) - max(x0, 0)) * (min(y1, 150) - max(y0, 0))
    assert overlap >= 0.9 * 200 * 150


# -- delegates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask_family", "answer_family"),
    [
        ("qwen2_5_vl", "llava_next"),
        ("llava", "gemma3"),
        ("glm4v", "llava"),
        ("llava", "glm4v"),
        ("mistral3", "llava"),
        ("qwen2_5_vl", "mistral3"),
        ("lfm2_vl", "llava"),
        ("qwen2_5_vl", "lfm2_vl"),
        ("qwen3_5", "llava"),
        ("llava", "qwen3_5"),
        ("gemma4", "qwen2_5_vl"),
        ("llava", "gemma4"),
        ("llama4", "llava"),
        ("qwen2_5_vl", "llama4"),
    ],
)
def test_delegate_mask_lands_on_the_answering_canvas(mask_family, answer_family, vlm_of, scene_image):
    mask_model, answering = vlm_of(mask_family), vlm_of(answer_family)
    layers = [1, 3] if {1, 3} <= set(mask_model.layer_kinds.attention) else list(mask_model.layer_kinds.attention)
    result = run_vea(answering, [scene_image], "What is it?", layers=layers, delegate=mask_model, max_new_tokens=2)
    target = extract_attention(answering, [scene_image], "What is it?", answering.layer_kinds.attention[-1:]).geometry
    assert result.attention.model_name == mask_model.name
    assert result.evidence.shape[1:] == target.canvas_hw == result.highlighted.shape[1:3]
    expected, image = align_mask(evidence_map(result.attention), result.attention.geometry, [scene_image], answering)
    torch.testing.assert_close(result.evidence, expected)
    # a hand-made box in the original frame (x 120..170, y 40..80: the red block) lands on the same pixels
    source = result.attention.geometry
    box = torch.zeros(1, 150, 200)
    box[:, 40:80, 120:170] = 1.0
    on_source = mask_from_original(box, source)
    moved = remap_mask(on_source, source, target)[0]
    cx0, cy0, cx1, cy1 = target.original_boxes_to_canvas(torch.tensor([[120, 40, 170, 80]]))[0].tolist()
    inner = moved[int(cy0) + 3 : int(cy1) - 3, int(cx0) + 3 : int(cx1) - 3]
    assert inner.min() > 0.95, "the box interior must stay on"
    outside = moved.clone()
    outside[max(int(cy0) - 4, 0) : int(cy1) + 4, max(int(cx0) - 4, 0) : int(cx1) + 4] = 0
    assert outside.max() < 0.05, "nothing may land away from the box"
    # the red block really is there on the answering model's canvas
    red = image[0][int(cy0) + 3 : int(cy1) - 3, int(cx0) + 3 : int(cx1) - 3]
    assert red[..., 0].min() > 0.85 and red[..., 1].max() < 0.25


# -- LLaVA-NeXT layout over many sizes (no model) ----------------------------------------


def _anyres_adapter(tile, pinpoints, family="llava_next"):
    """A LLaVA-NeXT / OneVision adapter on a bare config: pure layout arithmetic, no model."""
    from vea_engine.families.llava_next import LlavaNextAdapter
    from vea_engine.families.llava_onevision import LlavaOnevisionAdapter

    config = SimpleNamespace(
        vision_config=SimpleNamespace(image_size=tile, patch_size=14),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default" if family == "llava_next" else "full",
        vision_aspect_ratio="anyres_max_9",
        image_token_index=0,
    )
    processor = SimpleNamespace(image_processor=SimpleNamespace(image_grid_pinpoints=pinpoints))
    return (LlavaNextAdapter if family == "llava_next" else LlavaOnevisionAdapter)(processor, config)


LLAVA_V16_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
CASES = {
    "llava_next-tiny": ("llava_next", 56, [[r * 56, c * 56] for r, c in ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))]),
    "llava-v1.6": ("llava_next", 336, LLAVA_V16_PINPOINTS),
    "onevision-tiny": ("llava_onevision", 56, [[r * 56, c * 56] for r in range(1, 7) for c in range(1, 7)]),
    "onevision-qwen2": ("llava_onevision", 384, [[r * 384, c * 384] for r in range(1, 7) for c in range(1, 7)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_anyres_canvas_layout_is_a_fixed_point(case):
    """For any original size: the canvas (kept cells of the page) keeps exactly the same cells when re-encoded."""
    family, tile, pinpoints = CASES[case]
    adapter = _anyres_adapter(tile, pinpoints, family)
    cell = tile / adapter.base_side  # 14, or 384 / 27 for OneVision
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(tile, 6 * tile, size=(150, 2))] + [(150, 200), (tile, tile)]
    downsampled = 0
    for size in sizes:
        layout = adapter.layout(size)
        x0, y0, x1, y1 = layout.kept_page_box
        canvas_hw = (y1 - y0, x1 - x0)
        again = adapter.layout(canvas_hw)
        assert again.tokens_hw == layout.tokens_hw, size  # the same token grid ...
        assert again.resized_hw == canvas_hw, size  # ... on the canvas as it is (not resized again) ...
        assert again.page_to_input(again.kept_page_box) == (0, 0, canvas_hw[1], canvas_hw[0]), size  # ... all of it
        # when the canvas is itself a smaller pinpoint, the processor cuts it there (other tile borders, same
        # token boxes); the canvas is a fixed point either way
        assert again.best_hw == layout.best_hw or list(again.best_hw) in pinpoints and again.paste_yx == (0, 0)
        assert adapter.layout(canvas_hw) == again
        # the canvas shows the resized original up to at most one cell in all
        (nh, nw), (py, px) = layout.resized_hw, layout.paste_yx
        assert abs((y1 - y0) - nh) <= cell + 1 and abs((x1 - x0) - nw) <= cell + 1, size
        assert max(abs(y0 - py), abs(x0 - px), abs(y1 - py - nh), abs(x1 - px - nw)) <= cell + 1, size
        downsampled += layout.tokens_hw != (layout.kept[1] - layout.kept[0], layout.kept[3] - layout.kept[2])
    assert (downsampled > 0) == (family == "llava_onevision")  # anyres_max_9 shrinks large grids


def test_llava_next_newlines_of_an_ambiguous_count_follow_the_geometry():
    """336x112 and 1008x28 canvases of llava-v1.6 both give 792 placeholders, with rows of 8 and 2 cells."""
    adapter = _anyres_adapter(336, LLAVA_V16_PINPOINTS)
    assert adapter._grids_by_count[792] == {(24, 8), (72, 2)}
    ids = torch.zeros(1, 800, dtype=torch.long)
    ids[0, 3:795] = 0  # image_token_index = 0 everywhere
    ids[0, :3] = ids[0, 795:] = 7
    with pytest.raises(ValueError, match=r"grid shapes \[\(24, 8\), \(72, 2\)\] all give 792"):
        adapter.image_token_positions(ids)
    for canvas_hw, (rows, cols) in (((336, 112), (24, 8)), ((1008, 28), (72, 2)), ((336, 112), (24, 8))):
        geometry = adapter.token_layout(
            {"image_sizes": torch.tensor([canvas_hw])}, 0, Frame.whole(canvas_hw, canvas_hw)
        )
        assert (geometry.parts[1].rows, geometry.parts[1].cols) == (rows, cols)
        kept = adapter.image_token_positions(ids, [geometry])[0]
        newlines = sorted(set(range(3, 795)) - set(kept.tolist()))
        assert newlines == [3 + 576 + r * (cols + 1) + cols for r in range(rows)]
    # an unambiguous count needs no geometry first
    fresh = _anyres_adapter(336, LLAVA_V16_PINPOINTS)
    assert fresh.tiled_grid_for_count(576 + 48 * 49) == (48, 48)


def test_llava_next_newlines_are_excluded(vlm_of, scene_image):
    vlm = vlm_of("llava_next")
    inputs, geometry = _inputs(vlm, [scene_image], ["What?"])
    placeholders = (inputs["input_ids"][0] == vlm.adapter.image_token_id).nonzero().flatten()
    kept = vlm.adapter.image_token_positions(inputs["input_ids"], [geometry])[0]
    rows, cols = geometry.parts[1].rows, geometry.parts[1].cols
    assert placeholders.numel() == 16 + rows * (cols + 1) and kept.numel() == geometry.n_tokens
    newlines = sorted(set(placeholders.tolist()) - set(kept.tolist()))
    assert newlines == [int(placeholders[16 + r * (cols + 1) + cols]) for r in range(rows)]
    # the model fills those positions with its image_newline vector
    embeds = _image_embeddings_all(vlm, inputs)
    newline = vlm.model.model.image_newline
    torch.testing.assert_close(embeds[newlines], newline.expand(len(newlines), -1))
    assert (embeds[kept] - newline).abs().amax(-1).min() > 1e-3


def test_mistral3_row_break_and_end_tokens_are_not_in_the_grid(vlm_of, scene_image):
    """Mistral 3's image span is ``rows x ([IMG] * cols + [IMG_BREAK])`` with the last break an ``[IMG_END]``; the
    grid holds the ``[IMG]`` tokens only, and the model feeds the break and end tokens as text."""
    vlm = vlm_of("mistral3")
    inputs, geometry = _inputs(vlm, [scene_image], ["What?"])
    tokenizer = vlm.processor.tokenizer
    img, brk, end = (tokenizer.convert_tokens_to_ids(t) for t in ("[IMG]", "[IMG_BREAK]", "[IMG_END]"))
    (part,) = geometry.parts
    assert (part.rows, part.cols) == (5, 6)  # 200x150 -> 168 x 126 px, rounded up to 28-px cells: 168 x 140
    ids = inputs["input_ids"][0]
    start = int((ids == img).nonzero()[0])
    expected = ([img] * part.cols + [brk]) * part.rows
    expected[-1] = end
    assert ids[start : start + len(expected)].tolist() == expected
    kept = vlm.adapter.image_token_positions(inputs["input_ids"], [geometry])[0]
    grid = torch.tensor([start + r * (part.cols + 1) + c for r in range(part.rows) for c in range(part.cols)])
    assert torch.equal(kept, grid)
    embeds = _image_embeddings_all(vlm, inputs)
    separators = [start + r * (part.cols + 1) + part.cols for r in range(part.rows)]
    table = vlm.model.get_input_embeddings().weight
    torch.testing.assert_close(embeds[separators], table[ids[separators]], rtol=0, atol=0)
    assert (embeds[kept] - table[img]).abs().amax(-1).min() > 1e-3  # the [IMG] positions hold image features


def test_mistral3_refuses_a_processor_whose_token_cell_is_not_the_models(vlm_of, monkeypatch, scene_image):
    adapter = vlm_of("mistral3").adapter
    monkeypatch.setattr(adapter.processor, "spatial_merge_size", 1)  # a processor_config.json without the field
    with pytest.raises(ValueError, match=r"14-px token cells .* the model merges 28-px cells; fix processor_config"):
        adapter.render(np.asarray(scene_image))


@functools.cache
def _lfm2_vl_adapter():
    """An LFM2-VL adapter on the tiny builder's processor and config (no model)."""
    from vea_engine.families.lfm2_vl import Lfm2VlAdapter
    from vea_engine.testing.tiny_models.lfm2_vl import LFM2_VL
    from vea_engine.testing.tiny_models.spec import TinySpec

    spec = TinySpec(image_size=LFM2_VL.image_size)
    tokenizer = LFM2_VL.tokenizer(spec)
    return Lfm2VlAdapter(LFM2_VL.processor(spec, tokenizer), LFM2_VL.config(spec, tokenizer))


def _image_runs(tokens: list[str]) -> list[tuple[str, int]]:
    """``(the tag before it, length)`` of each run of ``<image>`` tokens in a prompt."""
    runs, tag = [], None
    for token in tokens:
        if token != "<image>":
            tag = token
        elif runs and runs[-1][0] == tag:
            runs[-1] = (tag, runs[-1][1] + 1)
        else:
            runs.append((tag, 1))
    return runs


@pytest.mark.parametrize("size", [(200, 150), (448, 448), (60, 40), (30, 500), (1000, 120), (130, 128), (640, 96)])
def test_lfm2_vl_layout_is_the_processors_at_many_sizes(size):
    """LFM2-VL's token layout against the processor's own outputs (no model): each tile's ``<image>`` run follows
    its ``<|img_row_R_col_C|>`` tag in row-major order, the thumbnail's follows ``<|img_thumbnail|>``, the grids
    are the processor's patch grids (``spatial_shapes``) unshuffled 2x2, and no tag is an image token."""
    from vea_engine.testing.tiny_models.lfm2_vl import EXPECTED

    adapter = _lfm2_vl_adapter()
    image = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    canvas = adapter.render(image)
    assert not np.shares_memory(canvas.pixels, image) and np.array_equal(canvas.pixels, image)  # the original
    inputs = adapter.encode([Image.fromarray(image)], ["What?"])
    layout = adapter.token_layout(inputs, 0, canvas.frame)
    ids = inputs["input_ids"][0].tolist()
    runs = _image_runs(adapter.processor.tokenizer.convert_ids_to_tokens(ids))
    shapes = [(h // 2, w // 2) for h, w in inputs["spatial_shapes"].tolist()]  # each grid's patches, 2x2 per token
    assert [(p.rows, p.cols) for p in layout.parts] == shapes
    assert [n for _, n in runs] == [p.n_tokens for p in layout.parts]
    W, H = size
    assert layout.parts[-1].box == (0, 0, W, H)  # the single grid, or the thumbnail: the whole canvas
    if len(layout.parts) == 1:
        assert [tag for tag, _ in runs] == ["<|image_start|>"]
    else:  # tiles, row-major, then the thumbnail
        tiles = [tuple(int(v) for v in re.findall(r"\d+", tag)) for tag, _ in runs[:-1]]
        rows, cols = max(r for r, _ in tiles), max(c for _, c in tiles)
        assert tiles == [(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)]
        assert runs[-1][0] == "<|img_thumbnail|>"
        assert [p.box for p in layout.parts[:-1]] == [
            (round(c * W / cols), round(r * H / rows), round((c + 1) * W / cols), round((r + 1) * H / rows))
            for r in range(rows)
            for c in range(cols)
        ]
    positions = adapter.image_token_positions(inputs["input_ids"], [layout])[0]
    assert positions.tolist() == [i for i, t in enumerate(ids) if t == adapter.image_token_id]
    assert len(positions) == layout.n_tokens
    if size in EXPECTED.image_tokens:
        assert layout.n_tokens == EXPECTED.image_tokens[size]


def test_lfm2_vl_tiny_decoder_is_hybrid():
    """The tiny LFM2-VL keeps LFM2's mix: short convolutions with attention at layers 2 and 5 only (its first six
    layer kinds), so capture has layers without an attention module to skip."""
    from transformers import AutoModelForImageTextToText

    from vea_engine.decoder import text_decoder_layers

    config = _lfm2_vl_adapter().config
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    layers = text_decoder_layers(model)
    assert config.text_config.layer_types == ["conv", "conv", "full_attention", "conv", "conv", "full_attention"]
    assert [i for i, layer in enumerate(layers) if hasattr(layer, "self_attn")] == [2, 5]
    assert all(hasattr(layer, "conv") for i, layer in enumerate(layers) if i not in (2, 5))


def _image_embeddings_all(vlm, inputs):
    seen = {}

    def grab(module, args, kwargs):
        seen["x"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handle = _text_model(vlm.model).layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.inference_mode():
            vlm.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    return seen["x"][0]


# -- Idefics3 / SmolVLM / InternVL canvases over many sizes (no model) ---------------------


@pytest.mark.parametrize(
    ("longest", "tile"), [(4 * 364, 364), (4 * 512, 512), (224, 112)], ids=["idefics3", "smolvlm2", "tiny"]
)
def test_split_image_canvas_is_a_fixed_point(longest, tile):
    """The processor's resized image (the canvas) is resized to itself when fed back: same tiles, same pixels."""
    from transformers import Idefics3ImageProcessor
    from transformers.image_utils import SizeDict

    ip = Idefics3ImageProcessor(size={"longest_edge": longest}, max_image_size={"longest_edge": tile})

    def processed_hw(h, w):
        pixels = torch.zeros(1, 3, h, w, dtype=torch.uint8)  # only the sizes matter
        pixels = ip.resize(pixels, SizeDict(longest_edge=longest))
        return tuple(ip.resize_for_vision_encoder(pixels, tile).shape[-2:])

    rng = np.random.default_rng(0)
    for h, w in [(150, 200), (tile, tile)] + [tuple(int(v) for v in s) for s in rng.integers(40, 3 * longest, (40, 2))]:
        canvas = processed_hw(h, w)
        assert canvas[0] % tile == 0 and canvas[1] % tile == 0 and max(canvas) == longest, (h, w)
        assert processed_hw(*canvas) == canvas, (h, w)


@pytest.mark.parametrize(("tile", "max_tiles"), [(448, 12), (112, 4)], ids=["internvl3.5", "tiny"])
def test_internvl_canvas_keeps_its_tile_grid(tile, max_tiles):
    from transformers import InternVLProcessor

    from vea_engine.families.internvl import InternVLAdapter

    image_processor = SimpleNamespace(
        size={"height": tile, "width": tile}, crop_to_patches=False, min_patches=1, max_patches=max_tiles
    )
    config = SimpleNamespace(vision_config=SimpleNamespace(patch_size=[14, 14]), downsample_ratio=0.5)
    processor = InternVLProcessor.__new__(InternVLProcessor)  # its class defaults only: crop_to_patches=True
    processor.image_processor = image_processor
    adapter = InternVLAdapter(processor, config)
    assert adapter.crop_to_patches
    rng = np.random.default_rng(0)
    grids = set()
    for h, w in [(150, 200), (tile, tile)] + [tuple(int(v) for v in s) for s in rng.integers(20, 6 * tile, (300, 2))]:
        rows, cols = adapter.tile_grid((h, w))
        grids.add((rows, cols))
        assert adapter.tile_grid((rows * tile, cols * tile)) == (rows, cols), (h, w)
    assert len(grids) > 5  # many different grids were exercised


# -- the attribution pass sees what the base answer sees -------------------------------------


def _encoded(vlm, run, monkeypatch):
    """The processor outputs (``input_ids``, ``pixel_values``) of every model input ``run()`` encodes."""
    calls, encode = [], vlm.adapter.encode

    def recording(images, prompts):
        inputs = encode(images, prompts)
        calls.append({k: inputs[k].clone() for k in ("input_ids", "pixel_values")})
        return inputs

    with monkeypatch.context() as patch:
        patch.setattr(vlm.adapter, "encode", recording)
        run()
    return calls


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_attribution_inputs_equal_base_answer_inputs(family, vlm_of, scene_image, monkeypatch):
    vlm = vlm_of(family)
    question = "What is written on the red sign?"
    layer = vlm.layer_kinds.attention[1:2]  # layer 1 of a plain decoder
    attribution = _encoded(vlm, lambda: extract_attention(vlm, [scene_image], question, layer), monkeypatch)
    base = _encoded(vlm, lambda: answer(vlm, [scene_image], question, "qa", max_new_tokens=1), monkeypatch)
    assert len(attribution) == len(base) == 1
    for key in ("input_ids", "pixel_values"):
        assert torch.equal(attribution[0][key], base[0][key]), key


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
@pytest.mark.parametrize("size", [(730, 10), (10, 730), (2000, 12)], ids=["wide", "tall", "wider"])
def test_anyres_inputs_too_thin_to_keep_a_tile_cell(family, size, vlm_of):
    """The processor and the model keep only the base grid (plus a newline per row when tall); so do we."""
    vlm = vlm_of(family)
    w, h = size
    image = (np.random.default_rng(3).random((h, w, 3)) * 255).astype(np.uint8)
    inputs, geometry = _inputs(vlm, [image], ["What?"])
    base, tiled = geometry.parts
    assert tiled.n_tokens == 0 and geometry.n_tokens == base.n_tokens
    placeholders = int((inputs["input_ids"][0] == vlm.adapter.image_token_id).sum())
    newlines = tiled.rows if w < h else 0
    assert placeholders == base.n_tokens + newlines  # the processor's own count
    attention = extract_attention(vlm, [image], "What?", [1])
    assert attention.scores.shape == (1, base.n_tokens) and torch.isfinite(evidence_map(attention)).all()
    again = extract_attention(vlm, attention.canvas, "What?", [1])  # the canvas round-trips
    assert again.geometry.layout == geometry.layout


def test_smolvlm_cells_lie_where_the_patches_are():
    """384-px tiles of 14-px patches: 27 patches see 378 px; scale 3 -> 9 tokens of 42 px per tile side."""
    from vea_engine.families.idefics3 import SmolVLMAdapter
    from vea_engine.geometry import Frame

    config = SimpleNamespace(vision_config=SimpleNamespace(patch_size=14, image_size=384), scale_factor=3)
    processor = SimpleNamespace(image_processor=SimpleNamespace(max_image_size={"longest_edge": 384}))
    adapter = SmolVLMAdapter(processor, config)
    adapter.__dict__["_row_col_ids"] = {100 + 10 * r + c: (r, c) for r in (1, 2) for c in (1, 2, 3)}
    ids = torch.tensor([[100 + 10 * r + c for r in (1, 2) for c in (1, 2, 3)]])
    layout = adapter.token_layout({"input_ids": ids}, 0, Frame.whole((700, 1000), (768, 1152)))
    assert layout.canvas_hw == (768, 1152) and len(layout.parts) == 7
    assert layout.parts[4].box == (384, 384, 762, 762)  # tile (row 2, col 2): its first 378 px
    assert layout.parts[-1].box == (0, 0, 1134, 756)  # the global image squashed: 378 / 384 of each side
    assert layout.cell_boxes()[9 * 9 * 4 + 9 * 8 + 8].tolist() == [720.0, 720.0, 762.0, 762.0]  # a 42-px cell
