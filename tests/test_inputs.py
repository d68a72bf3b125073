"""Bad or unusual input: each is a clear error naming the argument and the fix, or a correct conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vea_engine.answering import answer
from vea_engine.attribution import extract_attention
from vea_engine.capture import capture_attention_rows
from vea_engine.decoder import decoder_attention_modules
from vea_engine.images import to_rgb_uint8
from vea_engine.inputs import encode_batch
from vea_engine.layers import parse_layer_list, select_layers
from vea_engine.loading import load_vlm

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- loading -----------------------------------------------------------------------------
def test_missing_folder_and_bad_id(tmp_path):
    with pytest.raises(ValueError, match="neither an existing folder nor a hub id"):
        load_vlm(tmp_path / "nope" / "deeper")
    with pytest.raises(ValueError, match="no checkpoint given"):
        load_vlm("")


def test_folder_without_weights(tmp_path, tiny_model_dirs):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dirs["llava"] / "config.json").read_text())
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights"):
        load_vlm(folder)
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="convert them to safetensors"):
        load_vlm(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        load_vlm(empty)


def test_non_vlm_checkpoint(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match="without a vision tower, not a vision-language model"):
        load_vlm(tmp_path / "llama")


def test_unsupported_model_type_lists_supported(tmp_path):
    from transformers import Blip2Config

    from vea_engine.families import supported_model_types

    folder = tmp_path / "blip2"
    Blip2Config().save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"")
    listed = ", ".join(supported_model_types())
    with pytest.raises(ValueError, match=rf"'blip-2' is not supported by VEA; supported types: {listed}\."):
        load_vlm(folder)
    assert {"llava", "qwen2_vl", "qwen2_5_vl"} <= set(supported_model_types())


def test_model_type_transformers_does_not_know(tmp_path):
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "made_up_vlm", "vision_config": {}}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"model: cannot read the config of .*mystery.*made_up_vlm"):
        load_vlm(folder)


def test_bad_dtype_and_attention(tiny_model_dirs):
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_vlm(tiny_model_dirs["llava"], dtype="int8")
    with pytest.raises(ValueError, match="attn_implementation must be one of"):
        load_vlm(tiny_model_dirs["llava"], attn_implementation="magic")


# ---- layers and questions -------------------------------------------------------------------
def test_layer_index_out_of_range(tiny_vlms, scene_image):
    vlm = tiny_vlms["qwen2_5_vl"]
    with pytest.raises(ValueError, match=r"layer\(s\) \[6\] out of range for a model with 6 decoder layers"):
        select_layers([1, 6], vlm.num_layers)
    with pytest.raises(ValueError, match=r"layer\(s\) \[9\] out of range .* \(valid 0..5\)"):
        extract_attention(vlm, [scene_image], "What?", [9])
    with pytest.raises(ValueError, match="cannot read 'x'"):
        parse_layer_list("1,x")
    assert parse_layer_list("3, 1-2 3") == (1, 2, 3)


def test_presets_and_fallback():
    assert select_layers("preset", 28, "Qwen/Qwen2.5-VL-7B-Instruct").layers == (18, 22, 24)
    assert select_layers("preset", 32, "/models/VLM/llava-1.5-7b-hf").source == "preset:llava-hf/llava-1.5-7b-hf"
    # a preset is only used for a model of that depth; without one, all layers (as the reference)
    fallback = select_layers("preset", 6, "Qwen/Qwen2.5-VL-7B-Instruct")
    assert fallback.layers == (0, 1, 2, 3, 4, 5) and fallback.source == "fallback:all"


@pytest.mark.parametrize("question", ["", "   ", None])
def test_empty_question(tiny_vlms, scene_image, question):
    with pytest.raises(ValueError, match="question must be a non-empty string"):
        extract_attention(tiny_vlms["llava"], [scene_image], question, [1])
    with pytest.raises(ValueError, match="question must be a non-empty string"):
        answer(tiny_vlms["llava"], [scene_image], question, max_new_tokens=2)


def test_question_count_must_match_batch(tiny_vlms, scene_image):
    with pytest.raises(ValueError, match="got 2 questions for 3 images"):
        extract_attention(tiny_vlms["qwen2_5_vl"], [scene_image] * 3, ["a?", "b?"], [1])


# ---- images ------------------------------------------------------------------------------
def test_image_modes_convert_correctly():
    grey = Image.fromarray(np.array([[0, 128], [255, 64]], np.uint8), "L")
    out = to_rgb_uint8(grey)
    assert out.shape == (2, 2, 3) and (out[..., 0] == out[..., 2]).all() and out[0, 1, 1] == 128
    rgba = Image.fromarray(np.array([[[200, 0, 0, 0], [200, 0, 0, 255]]], np.uint8), "RGBA")
    out = to_rgb_uint8(rgba)
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent over white
    assert out[0, 1].tolist() == [200, 0, 0]
    sixteen = Image.fromarray(np.array([[0, 65535, 32896]], np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert to_rgb_uint8(sixteen)[0, :, 0].tolist() == [0, 255, 128]  # round(v / 257)
    assert to_rgb_uint8(np.array([[0.5]], np.float32)).tolist() == [[[128, 128, 128]]]
    palette = grey.convert("P")
    assert to_rgb_uint8(palette).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="NaN"):
        to_rgb_uint8(np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="channels last"):
        to_rgb_uint8(np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="no image file"):
        to_rgb_uint8("/nonexistent/picture.png")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["array", "tensor"])
def test_float_rgb_images_round_to_the_nearest_level_like_float64_numpy(dtype, as_tensor):
    """Every level, every half level and the neighbouring floats of each, out-of-range values, random values."""
    levels = np.arange(256, dtype=np.float64)
    exact = np.concatenate([levels / 255, (levels + 0.5) / 255, [-0.3, 1.7, 0.0, 1.0]]).astype(dtype)
    values = np.concatenate([exact, np.nextafter(exact, dtype(2)), np.nextafter(exact, dtype(-2))])
    values = np.concatenate([values, np.random.default_rng(0).random(3000).astype(dtype)])
    image = values[: values.size // 3 * 3].reshape(-1, 1, 3)  # [H, 1, 3]
    oracle = np.rint(np.clip(image.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    got = to_rgb_uint8(torch.from_numpy(image) if as_tensor else image)
    assert got.dtype == np.uint8 and np.array_equal(got, oracle)
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_rgb_uint8(torch.full((2, 2, 3), float("inf")) if as_tensor else np.full((2, 2, 3), np.inf, dtype))


def test_float_images_of_any_layout_and_precision_convert():
    """Flipped (negative strides), long-double, grey and alpha float images, and bfloat16 tensors."""
    image = np.random.default_rng(1).random((5, 4, 3))
    oracle = np.rint(image * 255).astype(np.uint8)
    assert np.array_equal(to_rgb_uint8(image[::-1, ::-1]), oracle[::-1, ::-1])
    assert np.array_equal(to_rgb_uint8(image.astype(np.longdouble)), oracle)
    assert np.array_equal(to_rgb_uint8(image[..., :1]), np.repeat(oracle[..., :1], 3, axis=-1))
    rgba = np.concatenate([image, np.full((5, 4, 1), 0.5)], axis=-1)  # half transparent over white
    assert np.array_equal(to_rgb_uint8(rgba), np.rint((image * 0.5 + 0.5) * 255).astype(np.uint8))
    half = torch.tensor([[[0.5, 0.25, 1.0]]], dtype=torch.bfloat16)  # exact in bfloat16
    assert to_rgb_uint8(half).tolist() == [[[128, 64, 255]]]  # 127.5 rounds to even: 128


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (60, 40), 90),
        lambda: Image.new("RGBA", (60, 40), (10, 200, 30, 128)),
        lambda: Image.fromarray(np.full((40, 60), 40000, np.uint16)),
        lambda: Image.new("RGB", (1, 1), (255, 0, 0)),
        lambda: torch.rand(40, 60, 3, generator=torch.Generator().manual_seed(0)),
    ],
    ids=["grey", "rgba", "16bit", "1x1", "tensor"],
)
def test_unusual_images_run_end_to_end(family, make, tiny_vlms):
    vlm = tiny_vlms[family]
    attention = extract_attention(vlm, [make()], "What is shown?", [1, 2])
    assert torch.isfinite(attention.scores).all() and attention.scores.shape[1] == attention.geometry.n_tokens
    assert attention.canvas.shape[1:3] == attention.geometry.canvas_hw


def test_images_in_a_batch_must_share_a_size(tiny_vlms, scene_image):
    with pytest.raises(ValueError, match="share a size"):
        extract_attention(tiny_vlms["qwen2_5_vl"], [scene_image, scene_image.resize((90, 90))], "What?", [1])


def test_model_still_usable_after_errors(vlm_of, scene_image):
    """An error inside a capture scope -- after the model was switched to the capturing kernel -- restores it."""
    vlm = vlm_of("qwen2_5_vl")
    attention_modules = decoder_attention_modules(vlm.model)
    configs = {id(c): c for c in [vlm.model.config.get_text_config(), *(m.config for m in attention_modules.values())]}
    assert {c._attn_implementation for c in configs.values()} == {"sdpa"}
    inputs = encode_batch(vlm, [scene_image], "What?").inputs
    with torch.inference_mode():
        before = vlm.model(**inputs, use_cache=False).logits
    with pytest.raises(ValueError, match="out of range"):  # refused before the scope is entered
        extract_attention(vlm, [scene_image], "What?", [99])

    class Boom(RuntimeError):
        pass

    switched = []

    def fail_in_layer_2(module, args, kwargs):
        switched.append({c._attn_implementation for c in configs.values()})
        raise Boom("an error in the middle of the forward pass")

    handle = attention_modules[2].register_forward_pre_hook(fail_in_layer_2, with_kwargs=True)
    try:
        with pytest.raises(Boom), torch.inference_mode():
            with capture_attention_rows(vlm.model, [1, 3]) as recorder:
                vlm.model(**inputs, use_cache=False)
    finally:
        handle.remove()
    assert len(switched) == 1 and len(switched[0]) == 1 and switched[0] != {"sdpa"}, (
        f"the error must fire while the capturing kernel is selected, not {switched}"
    )
    assert set(recorder.rows) == {1}, "layer 1 ran inside the scope, layer 3 never did"
    assert {c._attn_implementation for c in configs.values()} == {"sdpa"}
    with torch.inference_mode():
        assert torch.equal(vlm.model(**inputs, use_cache=False).logits, before)
    assert len(answer(vlm, [scene_image], "What?", max_new_tokens=2)) == 1


def test_a_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({}))
    with pytest.raises(ValueError, match="is not a readable image"):
        to_rgb_uint8(path)
