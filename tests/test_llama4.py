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
    modules = [m for m in decoder_attention_modules(vlm.model).values() if not m.use_rope]
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
    count = {
        t: int((ids == tokenizer.convert_tokens_to_ids(t)).sum())
        for t in ("<|tile_x_separator|>", "<|tile_y_separator|>", "<|image|>", "<|image_start|>", "<|image_end|>")
    }
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
    for h, w in [(150, 200), (40, 30), (112, 112), (90, 700)] + [
        tuple(int(v) for v in s) for s in rng.integers(20, 900, size=(12, 2))
    ]:
        image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        layout = vlm.adapter.layout((h, w))
        pixels = ip(images=[image], return_tensors="pt")["pixel_values"]  # [tiles (+1), 3, S, S]
        assert pixels.shape[0] == layout.n_tiles + layout.has_global_view, (h, w)
        canvas = vlm.adapter.render(image)
        nh, nw = layout.resized_hw
        assert canvas.pixels.shape[:2] == (nh, nw), (h, w)
        # the page beyond the canvas is the processor's black padding (-1 after normalising), the canvas is not
        rows, cols = layout.tiles_hw
        S = vlm.adapter.tile
        page = pixels[: layout.n_tiles].view(rows, cols, 3, S, S).permute(2, 0, 3, 1, 4).reshape(3, rows * S, -1)
        assert page[:, nh:].eq(-1).all() and page[:, :, nw:].eq(-1).all(), (h, w)


# -- Scout at real scale ----------------------------------------------------------------------

#: Architecture fields of meta-llama/Llama-4-Scout-17B-16E-Instruct's config.json as the public (reduced) copy
#: in GitHub ai-dynamo/aiconfigurator (aic-core/src/aiconfigurator_core/model_configs/
#: meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json, commit 54cb8c65a) has them. The complete file, the
#: processor files and the chat template could not be found (tests/fixtures/real_configs/SOURCES.md).
SCOUT_TEXT = {
    "attention_chunk_size": 8192,
    "head_dim": 128,
    "hidden_size": 5120,
    "interleave_moe_layer_step": 1,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "num_attention_heads": 40,
    "num_experts_per_tok": 1,
    "num_hidden_layers": 48,
    "num_key_value_heads": 8,
    "num_local_experts": 16,
    "use_qk_norm": True,
    "vocab_size": 202048,
}
SCOUT_VISION = {
    "hidden_size": 1408,
    "image_size": 336,
    "intermediate_size": 5632,
    "num_attention_heads": 16,
    "num_hidden_layers": 34,
    "patch_size": 14,
    "pixel_shuffle_ratio": 0.5,
    "projector_input_dim": 4096,
    "projector_output_dim": 4096,
    "vision_output_dim": 4096,
}

#: Scout's image tokens at the five sizes (W, H) of tests/test_real_configs.py, by hand: 336-px tiles of 12 x 12
#: tokens, at most 16 tiles. 224x224: one tile (the smallest upscale, 1.5), no global view: 144. 1024x768: 3 x 4
#: tiles (scale 1.3125, not resized: only padded) + global = 13 x 144. 2000x1500: no page fits unscaled; the
#: smallest downscale (0.672) ties 3 x 4, 3 x 5 and 4 x 4 tiles, the smallest page wins: 13 x 144. 4000x300: 1 x 12
#: tiles (4032 px, scale 1.008, not resized) + global: 13 x 144; 300x4000 the same on end.
SCOUT_TOKENS = {
    (224, 224): 144,
    (1024, 768): 13 * 144,
    (2000, 1500): 13 * 144,
    (4000, 300): 13 * 144,
    (300, 4000): 13 * 144,
}


def test_scout_processor_at_real_scale():
    """Transformers' Llama 4 image processor and processor at their defaults, which are Scout's (336-px tiles,
    at most 16, no resize to the largest page; the public copy above records the same ``max_patches`` and
    ``resize_to_max_canvas``): the image-token counts are the adapter's layout and the hand counts, and the
    canvas fed back gives the same ``input_ids``."""
    from PIL import Image
    from transformers import Llama4ImageProcessor, Llama4Processor

    from vea_engine.families.llama4 import Llama4Adapter
    from vea_engine.testing.tiny_models import tiny_processor
    from vea_engine.testing.tiny_models.llama4 import LLAMA4_CHAT_TEMPLATE

    tokenizer = tiny_processor("llama4").tokenizer
    processor = Llama4Processor(Llama4ImageProcessor(), tokenizer, chat_template=LLAMA4_CHAT_TEMPLATE)
    ip = processor.image_processor
    assert (ip.size["height"], ip.max_patches, ip.resize_to_max_canvas) == (336, 16, False)
    patch = tokenizer.convert_tokens_to_ids("<|patch|>")
    config = SimpleNamespace(vision_config=SimpleNamespace(**SCOUT_VISION), image_token_index=patch)
    adapter = Llama4Adapter(processor, config)
    for (w, h), expected in SCOUT_TOKENS.items():
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), ((x // 37 + y // 23) % 2) * 255], -1)
        image = image.astype(np.uint8)
        canvas = adapter.render(image)
        inputs = adapter.encode([Image.fromarray(image)], ["What is written on the sign?"])
        layout = adapter.token_layout(inputs, 0, canvas.frame)
        positions = adapter.image_token_positions(inputs["input_ids"], [layout])[0]
        assert positions.numel() == layout.n_tokens == expected, (w, h)
        again = adapter.encode([Image.fromarray(canvas.pixels)], ["What is written on the sign?"])
        assert torch.equal(again["input_ids"], inputs["input_ids"]), (w, h)
        assert adapter.token_layout(again, 0, adapter.render(canvas.pixels).frame).parts == layout.parts, (w, h)


def test_scout_decoder_on_the_meta_device():
    """Scout's decoder: 48 layers, RoPE layers chunked by 8192 tokens, every fourth layer NoPE and global, every
    layer MoE; capture finds all 48 attention modules."""
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    config = Llama4Config(text_config=SCOUT_TEXT, vision_config=SCOUT_VISION)
    with torch.device("meta"):
        model = Llama4ForConditionalGeneration(config)
    modules = list(decoder_attention_modules(model).values())  # every layer is softmax attention
    assert len(modules) == 48 and all(next(m.parameters()).is_meta for m in modules)
    text = config.text_config
    nope = [i for i, m in enumerate(modules) if not m.use_rope]
    assert nope == list(range(3, 48, 4))
    assert text.layer_types == ["full_attention" if i in nope else "chunked_attention" for i in range(48)]
    assert text.moe_layers == list(range(48)) and all(
        hasattr(m, "qk_norm") != (i in nope) for i, m in enumerate(modules)
    )
