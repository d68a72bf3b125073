"""LFM2-VL: a hybrid decoder (short convolutions and softmax attention) read at its attention layers only, and the
released LFM2-VL-450M files at real scale.

What every family must show (capture, planting, boxes, zoom, reuse, joint decoding...) runs through the
``ALL_FAMILIES`` tests, and ``extract_attention`` equals eager rows in tests/test_capture.py; here, what is
particular to LFM2-VL: convolution layers are refused and never the default, and the released checkpoint's
processor settings, decoder and chat template (transcribed in
``tests/fixtures/real_configs/LiquidAI__LFM2-VL-450M``, sources in its ``SOURCES.md``). Those files are the
checkpoint's first, remote-code revision (``model_type`` ``lfm2-vl``, processor settings in ``processor_config.json``),
so tests/test_real_configs.py cannot load them through ``AutoProcessor``; they are read here into transformers'
own ``Lfm2VlImageProcessor`` and ``Lfm2VlConfig``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vea_engine.attribution import extract_attention
from vea_engine.capture import decoder_attention_modules
from vea_engine.layers import select_layers

pytestmark = pytest.mark.usefixtures("one_thread")

RELEASED = Path(__file__).resolve().parent / "fixtures" / "real_configs" / "LiquidAI__LFM2-VL-450M"
QUESTION = "What is written on the red sign in the picture?"
#: Image sizes (W, H) of the real-scale check (those of tests/test_real_configs.py).
SIZES = ((224, 224), (1024, 768), (2000, 1500), (4000, 300), (300, 4000))
#: Image tokens by hand (16-px patches unshuffled 2 x 2: 32-px cells; 512-px tiles of 16 x 16 = 256 tokens; no
#: thumbnail). 224x224 (50,176 px, not above 256 * 32**2 * 2.0 = 524,288): one grid, 7 x 7 cells are below the
#: 64-token minimum, scaled up to 8 x 8 = 64. 1024x768 and 2000x1500 (4:3, split): of the grids with 2 to 10 tiles,
#: 3 x 2 (1.5) is the closest aspect ratio: 6 tiles, 1536. 4000x300 / 300x4000: 10 x 1 / 1 x 10 tiles, 2560.
RELEASED_TOKENS = {(224, 224): 64, (1024, 768): 6 * 256, (2000, 1500): 6 * 256, (4000, 300): 2560, (300, 4000): 2560}
#: The image processor settings of the released ``processor_config.json`` (the layout) and ``preprocessor_config.json``.
_PROCESSOR_FIELDS = (
    "tile_size",
    "encoder_patch_size",
    "downsample_factor",
    "min_tiles",
    "max_tiles",
    "min_image_tokens",
    "max_image_tokens",
    "max_pixels_tolerance",
    "do_image_splitting",
    "use_thumbnail",
    "max_num_patches",
)


def _released(name: str) -> dict:
    return json.loads((RELEASED / name).read_text(encoding="utf-8"))


def test_convolution_layers_are_refused_and_the_defaults_are_the_attention_layers(vlm_of, scene_image):
    vlm = vlm_of("lfm2_vl")
    kinds = vlm.layer_kinds
    assert [k.kind for k in kinds.layers] == ["conv", "conv", "full_attention"] * 2
    assert set(decoder_attention_modules(vlm.model)) == {2, 5}  # convolution layers have no module to capture
    for mode in (None, "preset", "all"):
        assert select_layers(mode, kinds, vlm.name).layers == (2, 5)
    assert select_layers("deepest_half", kinds).layers == (5,)
    assert extract_attention(vlm, [scene_image], QUESTION, "all").layers == (2, 5)
    with pytest.raises(ValueError, match=r"layer\(s\) \[1\] are conv layers, .*softmax-attention layers \[2, 5\]"):
        extract_attention(vlm, [scene_image], QUESTION, [1, 2])


def test_released_processor_at_real_scale():
    """transformers' ``Lfm2VlImageProcessor`` with LFM2-VL-450M's settings: the processor's image tokens are the
    adapter's layout (hand-counted), and the canvas (the original) fed back gives the same ``input_ids``."""
    from transformers import Lfm2VlImageProcessor

    from vea_engine.families.lfm2_vl import Lfm2VlAdapter
    from vea_engine.testing.tiny_models import tiny_config, tiny_processor

    settings, pixels = _released("processor_config.json"), _released("preprocessor_config.json")
    processor = tiny_processor("lfm2_vl")
    processor.image_processor = Lfm2VlImageProcessor(
        **{name: settings[name] for name in _PROCESSOR_FIELDS},
        image_mean=pixels["image_mean"],
        image_std=pixels["image_std"],
    )
    adapter = Lfm2VlAdapter(processor, tiny_config("lfm2_vl"))  # the tiny model's 16-px patches, unshuffled by 2
    assert adapter.input_side == 512
    for w, h in SIZES:
        y, x = np.mgrid[0:h, 0:w]
        image = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x // 37 + y // 23) % 2 * 255], -1).astype(np.uint8)
        canvas = adapter.render(image)
        inputs = adapter.encode([Image.fromarray(image)], ["What is written?"])
        layout = adapter.token_layout(inputs, 0, canvas.frame)
        placeholders = int((inputs["input_ids"][0] == adapter.image_token_id).sum())
        assert placeholders == layout.n_tokens == RELEASED_TOKENS[(w, h)], (w, h)
        assert canvas.pixels.shape[:2] == layout.canvas_hw == (h, w)
        again = adapter.encode([Image.fromarray(canvas.pixels)], ["What is written?"])
        assert torch.equal(again["input_ids"], inputs["input_ids"]), (w, h)


def test_released_decoder_on_the_meta_device():
    """LFM2-VL-450M's decoder (16 layers, softmax attention at 2, 5, 8, 10, 12 and 14, convolutions elsewhere), built
    from the released text and vision configs on the meta device: the decoder walk finds the attention layers and
    capture's modules exactly there, and the default layers are those."""
    from transformers import AutoModelForImageTextToText, Lfm2VlConfig

    from vea_engine.decoder import layer_kinds
    from vea_engine.families import adapter_class
    from vea_engine.families.lfm2_vl import Lfm2VlAdapter

    released = _released("config.json")
    config = Lfm2VlConfig(
        text_config=released["text_config"],
        vision_config=released["vision_config"],
        image_token_id=released["image_token_index"],
        downsample_factor=released["downsample_factor"],
        projector_hidden_size=released["projector_hidden_size"],
    )
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    kinds = layer_kinds(model)
    attention = (2, 5, 8, 10, 12, 14)
    assert kinds.num_layers == 16 and kinds.attention == attention
    assert set(decoder_attention_modules(model)) == set(attention)
    assert all(next(m.parameters()).is_meta for m in decoder_attention_modules(model).values())
    assert select_layers(None, kinds, "LiquidAI/LFM2-VL-450M").layers == attention
    assert select_layers("deepest_half", kinds).layers == (10, 12, 14)
    assert adapter_class(config.model_type) is Lfm2VlAdapter


def test_tiny_chat_template_renders_as_the_released_one():
    """The tiny checkpoints' template writes what LFM2-VL-450M's released one writes (image and text parts, plain
    string turns, the generation prompt)."""
    from vea_engine.testing.tiny_models import tiny_processor
    from vea_engine.testing.tiny_models.lfm2_vl import LFM2_VL_CHAT_TEMPLATE

    tokenizer = tiny_processor("lfm2_vl").tokenizer
    released = (RELEASED / "chat_template.jinja").read_text(encoding="utf-8")
    conversations = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}],
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}],
    ]
    texts = []
    for conversation in conversations:
        rendered = [
            tokenizer.apply_chat_template(conversation, chat_template=t, add_generation_prompt=True, tokenize=False)
            for t in (released, LFM2_VL_CHAT_TEMPLATE)
        ]
        assert rendered[0] == rendered[1]
        texts.append(rendered[0])
    assert texts == [
        f"<|startoftext|><|im_start|>user\n<image>{QUESTION}<|im_end|>\n<|im_start|>assistant\n",
        "<|startoftext|><|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>assistant\n",
    ]
