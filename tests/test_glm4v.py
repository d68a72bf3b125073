"""GLM-4.1V, GLM-4.5V and GLM-4.6V: one token grid per image, wrapped in begin/end-of-image tokens.

The oracle for the scores is eager ``output_attentions`` at the positions of the config's
``image_token_id``; the layout is checked by planting attention on known tokens (the
wrapping tokens, the first and last image token), independently of the capture code.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.planting import planted
from vea_engine.attribution import extract_attention, layer_scores
from vea_engine.inputs import encode_batch

pytestmark = pytest.mark.usefixtures("one_thread")

GLM_FAMILIES = ("glm4v", "glm4v_moe", "glm46v")
QUESTION = "What is written on the red sign?"


@pytest.mark.parametrize("family", GLM_FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_extract_attention_equals_eager_rows_at_every_layer(family, attn, vlm_of, scene_image):
    """Scores = head-mean eager attention of the last prompt token at the image tokens, per layer and averaged."""
    vlm, eager = vlm_of(family, attn), vlm_of(family, "eager")
    batch = encode_batch(vlm, [scene_image], QUESTION)
    ids = batch.inputs["input_ids"][0]  # [N]
    positions = (ids == vlm.model.config.image_token_id).nonzero(as_tuple=True)[0]  # [n]
    with torch.inference_mode():
        out = eager.model(**batch.inputs, use_cache=False, output_attentions=True)
    rows = torch.stack([a.float().mean(1)[0, -1] for a in out.attentions])[:, positions]  # [L, n]
    every = tuple(range(vlm.num_layers))
    scores, geometry, _, _ = layer_scores(vlm, [scene_image], QUESTION, every)  # [L, 1, n]
    assert scores.shape == (vlm.num_layers, 1, positions.numel()) and geometry.n_tokens == positions.numel()
    assert (scores[:, 0] - rows).abs().max().item() <= 1e-5
    for layers in [*((layer,) for layer in every), every, (1, 4)]:
        attention = extract_attention(vlm, [scene_image], QUESTION, layers)
        assert (attention.scores[0] - rows[list(layers)].mean(0)).abs().max().item() <= 1e-5, layers


@pytest.mark.parametrize("family", GLM_FAMILIES)
def test_grid_lies_between_begin_and_end_of_image_and_excludes_them(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    config = vlm.model.config
    batch = encode_batch(vlm, [scene_image], QUESTION)
    ids = batch.inputs["input_ids"][0]  # [N]
    (begin,) = (ids == config.image_start_token_id).nonzero(as_tuple=True)[0].tolist()
    (end,) = (ids == config.image_end_token_id).nonzero(as_tuple=True)[0].tolist()
    assert batch.positions[0].tolist() == list(range(begin + 1, end))
    # 200x150 -> 196x140 (multiples of 28 inside the budget): 7 x 5 tokens of 28 px
    (part,) = batch.geometry.parts
    assert (part.rows, part.cols, batch.geometry.canvas_hw, part.box) == (5, 7, (140, 196), (0, 0, 196, 140))
    layers = (1, 4)
    with planted(vlm, layers, [begin, end]):  # the wrapping tokens take all attention and are not on the grid
        attention = extract_attention(vlm, [scene_image], QUESTION, layers)
    assert attention.scores.sum().item() < 1e-3
    with planted(vlm, layers, [begin + 1, end - 1]):  # the first and last image token: the grid's corners
        attention = extract_attention(vlm, [scene_image], QUESTION, layers)
    grid = attention.geometry.split(attention.scores)[0][0]  # [rows, cols]
    assert grid[0, 0] > 0.49 and grid[-1, -1] > 0.49  # the pinned dimension is not rotated: an even split


#: Image sizes (W, H) of the full-scale check (those of tests/test_real_configs.py).
FULL_SCALE_SIZES = ((224, 224), (1024, 768), (2000, 1500), (4000, 300), (300, 4000))
#: The released GLM-V processors' budget, ``size`` of their image processor config (GLM-4.1V-9B-Thinking's whole file
#: is tests/fixtures/real_configs/zai-org__GLM-4.1V-9B-Thinking/preprocessor_config.json, checked at real scale in
#: tests/test_real_configs.py; GLM-4.5V's and GLM-4.6V's were not found, the same numbers are in public copies).
RELEASED_SIZE = {"shortest_edge": 12544, "longest_edge": 9633792}
#: Image tokens by hand (28-px cells; the budget counts two frames). The released budget allows 9633792 / 2
#: = 4,816,896 image pixels: 1024x768 keeps its size, rounded to 1036x756 = 37 x 27 cells. ``paper`` allows
#: 512*512: scaled by sqrt(3) and floored, 588x420 = 21 x 15 cells. 224x224: 8 x 8 cells in both modes.
FULL_SCALE_TOKENS = {("checkpoint", (1024, 768)): 37 * 27, ("paper", (1024, 768)): 21 * 15}


@pytest.mark.parametrize("mode", ["paper", "checkpoint"])
def test_canvas_and_token_grid_of_the_full_scale_processor(mode):
    """transformers' own ``Glm4vImageProcessor`` at the released budget: the canvas is the processor's resize, the
    layout counts its tokens, ``paper`` keeps images at 512*512 pixels and the canvas round-trips."""
    import numpy as np
    from PIL import Image
    from transformers import Glm4vImageProcessor

    from vea_engine.config import PAPER_MAX_PIXELS
    from vea_engine.families.glm4v import Glm4vAdapter
    from vea_engine.testing.tiny_models import tiny_config, tiny_processor

    processor = tiny_processor("glm4v")
    processor.image_processor = Glm4vImageProcessor(size=RELEASED_SIZE)
    adapter = Glm4vAdapter(processor, tiny_config("glm4v"))
    if mode == "paper":
        adapter.set_max_pixels(PAPER_MAX_PIXELS)
        assert processor.image_processor.size["longest_edge"] == 2 * PAPER_MAX_PIXELS and adapter.input_side == 512
    for w, h in FULL_SCALE_SIZES:
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x // 37 + y // 23) % 2 * 255], -1).astype(np.uint8)
        canvas = adapter.render(image)
        inputs = adapter.encode([Image.fromarray(image)], ["What is written?"])
        layout = adapter.token_layout(inputs, 0, canvas.frame)
        _, gh, gw = inputs["image_grid_thw"][0].tolist()  # patches of 14 px
        assert canvas.pixels.shape[:2] == layout.canvas_hw == (gh * 14, gw * 14), (w, h)
        placeholders = int((inputs["input_ids"][0] == adapter.image_token_id).sum())
        assert placeholders == layout.n_tokens == (gh // 2) * (gw // 2), (w, h)
        assert layout.n_tokens == FULL_SCALE_TOKENS.get((mode, (w, h)), layout.n_tokens), (w, h)
        if (w, h) == (224, 224):
            assert layout.n_tokens == 64
        if mode == "paper":
            assert canvas.pixels.shape[0] * canvas.pixels.shape[1] <= PAPER_MAX_PIXELS, (w, h)
        again = adapter.encode([Image.fromarray(canvas.pixels)], ["What is written?"])
        assert torch.equal(again["image_grid_thw"], inputs["image_grid_thw"]), (w, h)
    with pytest.raises(ValueError, match=r"1000 pixels is below this processor's minimum of 6272 pixels"):
        adapter.set_max_pixels(1000)  # 112*112 over two frames


@pytest.mark.parametrize(
    "config_class, depth",
    # transformers' defaults are the released architectures: GLM-4.1V-9B (GLM-4-9B decoder, 40 layers) and
    # GLM-4.5V (GLM-4.5-Air decoder, 46 layers: 1 dense then 45 with experts); GLM-4.6V's takes either text config.
    [("Glm4vConfig", 40), ("Glm4vMoeConfig", 46), ("Glm46VConfig", 40)],
)
def test_full_size_decoder_on_the_meta_device(config_class, depth):
    """Every decoder layer of the full-size model is a softmax self-attention module that capture finds."""
    import transformers
    from transformers import AutoModelForImageTextToText

    from vea_engine.decoder import decoder_attention_modules
    from vea_engine.families import adapter_class
    from vea_engine.families.glm4v import Glm4vAdapter

    config = getattr(transformers, config_class)()
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    modules = list(decoder_attention_modules(model).values())  # every layer is softmax attention
    assert len(modules) == config.get_text_config().num_hidden_layers == depth
    assert all(type(m).__name__.endswith("TextAttention") and next(m.parameters()).is_meta for m in modules)
    assert getattr(config.get_text_config(), "layer_types", None) is None  # no sliding or linear layers
    assert adapter_class(config.model_type) is Glm4vAdapter


def test_tiny_chat_template_is_the_released_one():
    """The tiny checkpoints' template is GLM-4.1V-9B-Thinking's: its text hashes (JSON-encoded) to the sha256 a
    public record of the checkpoint at revision 3c1471e gives (tests/fixtures/real_configs/SOURCES.md)."""
    import hashlib
    import json

    from vea_engine.testing.tiny_models.glm4v import GLM4V_CHAT_TEMPLATE

    digest = hashlib.sha256(json.dumps(GLM4V_CHAT_TEMPLATE).encode()).hexdigest()
    assert digest == "5232dbe7ee947df4d2009f2b262b70a22d4f2d2f0590e2af4ef2a78096171e90"


def test_a_flat_first_release_config_loads_its_own_decoder(tiny_model_dirs, vlm_of, scene_image, tmp_path):
    """GLM-4.1V's first release wrote config.json flat (decoder fields at the top level). transformers 5 would
    build its default decoder from it; ``load_vlm`` reads it as the release did: the same decoder, bit-equal logits
    as the nested file of the same weights."""
    from transformers import AutoConfig

    from vea_engine.loading import load_vlm

    source = tiny_model_dirs["glm4v"]
    flat_dir = tmp_path / "glm4v-flat"
    flat_dir.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (flat_dir / item.name).symlink_to(item)
    data = json.loads((source / "config.json").read_text())
    text = data.pop("text_config")
    text.pop("model_type", None)
    flat = {**text, **data}  # the decoder's fields at the top level, as the first release wrote them
    (flat_dir / "config.json").write_text(json.dumps(flat))
    naive = AutoConfig.from_pretrained(flat_dir).get_text_config()
    nested = vlm_of("glm4v").model.config.get_text_config()
    assert naive.num_hidden_layers != nested.num_hidden_layers or naive.hidden_size != nested.hidden_size
    vlm = load_vlm(flat_dir, dtype="float32", attn_implementation="sdpa")
    got = vlm.model.config.get_text_config()
    for field in ("num_hidden_layers", "hidden_size", "num_attention_heads", "rope_parameters"):
        assert getattr(got, field) == getattr(nested, field), field
    inputs = encode_batch(vlm, [scene_image], "What is written?").inputs
    with torch.inference_mode():
        assert torch.equal(vlm.model(**inputs).logits, vlm_of("glm4v").model(**inputs).logits)
