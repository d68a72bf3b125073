"""Llama 4: attribution on chunked and NoPE layers, tile separators, the tile page over many sizes.

* ``extract_attention`` (and its per-layer scores) equal the eager ``output_attentions``
  rows of the last prompt token at the ``<|patch|>`` positions, head mean then layer mean,
  on every layer, on SDPA and on eager; the chunk of the RoPE layers cuts the prompt
  (checked in ``test_capture.py`` too, on every query row kind);
* the NoPE layers' query temperature (which grows with the position past ``floor_scale``)
  reaches the capture as the model applies it;
* the separators, ``<|image|>`` and the start / end tokens are never grid tokens; each tile's
  tokens are one run between separators;
* the tile page, canvas and its fixed point over many sizes at real scale (no model).
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vea_engine.attribution import extract_attention, layer_scores
from vea_engine.capture import capture_attention_rows
from vea_engine.decoder import decoder_attention_modules
from vea_engine.inputs import encode_batch

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "What is written on the red sign in the picture?"


def _eager_last_rows(eager, inputs):
    """Head-mean attention of the last prompt token at every layer, ``[L, B, N]`` (the oracle)."""
    with torch.inference_mode():
        out = eager.model(**inputs, use_cache=False, output_attentions=True)
    return torch.stack([a.float().mean(1)[:, -1] for a in out.attentions])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_extract_attention_equals_eager_rows_on_every_layer(attn, vlm_of, scene_image):
    vlm, eager = vlm_of("llama4", attn), vlm_of("llama4", "eager")
    text = vlm.model.config.text_config
    batch = encode_batch(eager, [scene_image], QUESTION)
    ids = batch.inputs["input_ids"][0]
    patches = (ids == vlm.model.config.image_token_id).nonzero(as_tuple=True)[0]
    assert torch.equal(batch.positions[0], patches) and patches.numel() == batch.geometry.n_tokens == 5 * 16
    assert ids.numel() > text.attention_chunk_size  # the chunks cut the prompt
    expected = _eager_last_rows(eager, batch.inputs)[:, 0, patches]  # [L, n] per layer
    layers = tuple(range(vlm.num_layers))
    per_layer, geometry, _, _ = layer_scores(vlm, [scene_image], QUESTION, layers)  # [L, 1, n]
    assert geometry == batch.geometry
    assert (per_layer[:, 0] - expected).abs().max().item() <= 1e-5
    scores = extract_attention(vlm, [scene_image], QUESTION, layers).scores  # [1, n]
    assert scores.shape == (1, patches.numel())
    assert (scores[0] - expected.mean(0)).abs().max().item() <= 1e-5
    # the last prompt token's chunk holds no image token in the chunked layers; the NoPE layers see them all
    chunked = [i for i, t in enumerate(text.layer_types) if t == "chunked_attention"]
    nope = [i for i, t in enumerate(text.layer_types) if t == "full_attention"]
    assert per_layer[chunked].abs().max() == 0 and per_layer[nope].sum(-1).min() > 0


@contextmanager
def _temperature_from(vlm, floor_scale: int):
    """The NoPE layers scale their queries from position ``floor_scale`` on (Scout: 8192, beyond the tiny prompts)."""
    modules = [m for m in decoder_attention_modules(vlm.model) if not m.use_rope]
    saved = [m.floor_scale for m in modules]
    try:
        for module in modules:
            module.floor_scale = floor_scale
        yield [m.layer_idx for m in modules]
    finally:
        for module, value in zip(modules, saved, strict=True):
            module.floor_scale = value


def test_nope_query_temperature_reaches_the_capture(vlm_of, scene_image):
    vlm, eager = vlm_of("llama4"), vlm_of("llama4", "eager")
    inputs = encode_batch(vlm, [scene_image], QUESTION).inputs
    with _temperature_from(vlm, 16) as nope, _temperature_from(eager, 16):
        expected = _eager_last_rows(eager, inputs)[nope]  # [L_nope, 1, N]
        with torch.inference_mode(), capture_attention_rows(vlm.model, nope) as recorder:
            vlm.model(**inputs, use_cache=False)
    got = recorder.stacked()[:, :, -1]  # [L_nope, 1, N]
    assert (got - expected).abs().max().item() <= 1e-5
    plain = _eager_last_rows(eager, inputs)[nope]
    assert (plain - expected).abs().max().item() > 1e-3  # the temperature really changed the rows


def test_separators_are_not_grid_tokens(vlm_of, scene_image):
    vlm = vlm_of("llama4")
    batch = encode_batch(vlm, [scene_image], QUESTION)
    ids, positions = batch.inputs["input_ids"][0], batch.positions[0]
    tokenizer = vlm.processor.tokenizer
    count = {t: int((ids == tokenizer.convert_tokens_to_ids(t)).sum()) for t in ("<|tile_x_separator|>",
             "<|tile_y_separator|>", "<|image|>", "<|image_start|>", "<|image_end|>")}  # fmt: skip
    rows, cols = 2, 2  # 200x150 on 112-px tiles: a 224 x 224 page
    assert count == {
        "<|tile_x_separator|>": rows * (cols - 1),
        "<|tile_y_separator|>": rows,
        "<|image|>": 1,
        "<|image_start|>": 1,
        "<|image_end|>": 1,
    }
    assert (ids[positions] == vlm.adapter.image_token_id).all()
    # the image span holds the grid tokens and the separators, nothing else
    start = int((ids == tokenizer.convert_tokens_to_ids("<|image_start|>")).nonzero()[0])
    end = int((ids == tokenizer.convert_tokens_to_ids("<|image_end|>")).nonzero()[0])
    assert end - start - 1 == positions.numel() + sum(count.values()) - 2
    # each grid (four tiles, then the global view) is one run of consecutive positions, in token order
    n = vlm.adapter.tokens_per_side**2
    runs = positions.view(-1, n)  # [parts, n]
    assert runs.shape[0] == len(batch.geometry.parts) == rows * cols + 1
    assert torch.equal(runs - runs[:, :1], torch.arange(n).expand_as(runs))
    gaps = (runs[1:, 0] - runs[:-1, -1]).tolist()  # separators between the runs
    assert gaps == [2, 2, 2, 3]  # tile x tile y tile x tile y <|image|> global: one token between runs, then two


def _adapter(tile: int, max_patches: int):
    from vea_engine.families.llama4 import Llama4Adapter

    image_processor = SimpleNamespace(
        size={"height": tile, "width": tile}, max_patches=max_patches, resize_to_max_canvas=False
    )
    config = SimpleNamespace(vision_config=SimpleNamespace(image_size=tile, patch_size=14, pixel_shuffle_ratio=0.5))
    return Llama4Adapter(SimpleNamespace(image_processor=image_processor), config)


@pytest.mark.parametrize(("tile", "max_patches"), [(336, 16), (112, 6)], ids=["scout", "tiny"])
def test_canvas_lands_on_its_own_page(tile, max_patches):
    """Fed back, the canvas (the resized image without its padding) is not resized again and gets the same
    tiles; only when the processor's page has a whole tile row or column of padding (a near tie of two
    pages' scales, where the resize lands exactly on the smaller page) the canvas gets that smaller page."""
    import math

    adapter = _adapter(tile, max_patches)
    rng = np.random.default_rng(0)
    sizes = [(150, 200), (tile, tile), (3, 4000), (4000, 3)]
    sizes += [tuple(int(v) for v in s) for s in rng.integers(10, 8 * tile, size=(400, 2))]
    pages, padded = set(), 0
    for size in sizes:
        layout = adapter.layout(size)
        (nh, nw), (rows, cols) = layout.resized_hw, layout.tiles_hw
        pages.add(layout.tiles_hw)
        assert rows * cols <= max_patches and nh <= rows * tile and nw <= cols * tile, size
        needed = (math.ceil(nh / tile), math.ceil(nw / tile))
        again = adapter.layout(layout.resized_hw)
        assert again.resized_hw == layout.resized_hw, size  # never resized again
        assert again.tiles_hw == needed, size
        padded += needed != layout.tiles_hw
    assert len(pages) > 8 and padded < len(sizes) // 50


def test_layout_is_the_processors(vlm_of):
    """The tile page and resize the adapter predicts are what the image processor does (tiny scale, many sizes)."""
    vlm = vlm_of("llama4")
    ip = vlm.processor.image_processor
    rng = np.random.default_rng(2)
    for h, w in [(150, 200), (40, 30), (112, 112), (90, 700)] + [tuple(int(v) for v in s) for s in rng.integers(
            20, 900, size=(12, 2))]:  # fmt: skip
        image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        layout = vlm.adapter.layout((h, w))
        pixels = ip(images=[image], return_tensors="pt")["pixel_values"]  # [tiles (+1), 3, S, S]
        assert pixels.shape[0] == layout.n_tiles + layout.has_global_view, (h, w)
        canvas = vlm.adapter.render(image)
        nh, nw = layout.resized_hw
        assert canvas.pixels.shape[:2] == (nh, nw), (h, w)
        # the page beyond the canvas is the processor's black padding (-1 after normalising), the canvas is not
        rows, cols = layout.tiles_hw
        page = pixels[: layout.n_tiles].view(rows, cols, 3, 112, 112).permute(2, 0, 3, 1, 4).reshape(3, rows * 112, -1)
        assert page[:, nh:].eq(-1).all() and page[:, :, nw:].eq(-1).all(), (h, w)
