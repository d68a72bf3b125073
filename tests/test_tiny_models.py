"""Tiny random-weight VLM checkpoints: saved like user checkpoints, loaded through transformers' Auto classes.

Every family (:data:`FAMILIES`) is the session's checkpoint (``tiny_model_dirs``, built once), loaded back with
``AutoModelForImageTextToText`` / ``AutoProcessor`` (``local_files_only=True``) and
checked against exact expectations: token geometry, chat text, sizes, determinism,
left padding and SDPA == eager.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vea_engine.decoder import decoder_attention_modules, layer_kinds
from vea_engine.testing.tiny_models import (
    BUILDER_VERSION,
    FAMILIES,
    MARKER_NAME,
    available_families,
    build_tiny_model,
    build_tiny_models,
    missing_requirements,
    read_marker,
    tiny_config,
)
from vea_engine.testing.tiny_models.registry import expectations

QUESTION = "What is the code in the yellow box?"
#: Input picture sizes (W, H) whose image-token counts every family's expectations list. The
#: expected chat text, image token and counts are hand-written next to each family's builder
#: (``EXPECTED`` in ``vea_engine/testing/tiny_models/<family>.py``), read here via ``expectations``.
SIZES = [(200, 150), (448, 448)]
#: Families whose decoder mixes linear attention (Gated DeltaNet) with softmax layers.
HYBRID = ("qwen3_5", "qwen3_5_moe")
#: Families with softmax attention at layers 2 and 5 only: the Gated DeltaNet hybrids, and LFM2-VL (short
#: convolutions elsewhere; its tokenizer is not byte-level and its q_proj has no gate).
ATTENTION_AT_2_5 = (*HYBRID, "lfm2_vl")


@dataclass
class Loaded:
    folder: Path
    processor: Any
    model: Any  # SDPA, float32, eval


def _picture(width: int, height: int, seed: int = 7) -> Image.Image:
    """A deterministic RGB picture with a red block (structure for the vision tower)."""
    rng = np.random.default_rng(seed)
    array = (rng.random((height, width, 3)) * 60 + 90).astype(np.uint8)
    array[height // 4 : height // 2, width // 2 : width * 5 // 6] = (250, 30, 30)
    return Image.fromarray(array)


def _chat(processor: Any, question: str = QUESTION) -> str:
    if processor.chat_template is None:  # PaliGemma: the processor adds image tokens, BOS and the newline
        return "<image>" + question
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _encode(processor: Any, questions: list[str], images: list[Image.Image]) -> Any:
    """One image per prompt (nested, as every processor reads it), left-padded; no training labels."""
    texts = [_chat(processor, q) for q in questions]
    bos = processor.tokenizer.bos_token
    extra = {"add_special_tokens": False} if bos and all(t.startswith(bos) for t in texts) else {}
    inputs = processor(text=texts, images=[[im] for im in images], return_tensors="pt", padding=True, **extra)
    inputs.pop("labels", None)
    for key, value in inputs.items():  # Llama 4's processor normalises in bfloat16; the models here are float32
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            inputs[key] = value.float()
    return inputs


def _image_token_id(model: Any) -> int:
    return int(model.config.image_token_id)


def _text_decoder(model: Any) -> Any:
    from vea_engine.decoder import text_decoder

    return text_decoder(model)


@pytest.fixture(scope="session", params=FAMILIES)
def family(request) -> str:
    missing = missing_requirements(request.param)
    if missing:
        pytest.skip(f"{request.param} needs {', '.join(missing)}")
    return request.param


@pytest.fixture(scope="session")
def loaded(tiny_model_dirs, family) -> Loaded:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_model_dirs[family]
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    return Loaded(folder, processor, model)


# -- API errors ---------------------------------------------------------------------------


def test_unknown_family_lists_known_ones(tmp_path):
    for call in (lambda: build_tiny_model("blip9", tmp_path / "x"), lambda: tiny_config("blip9")):
        with pytest.raises(ValueError, match="blip9") as info:
            call()
        assert all(f in str(info.value) for f in FAMILIES)
    with pytest.raises(ValueError, match="known families"):
        build_tiny_models(tmp_path, families=("llava", "nope"))
    assert not (tmp_path / "llava-tiny").exists()  # validated before building anything


def test_bad_overrides_are_rejected():
    with pytest.raises(ValueError, match="num_layers"):
        tiny_config("llava", num_layers=3)
    with pytest.raises(ValueError, match="image_size.*llava"):
        tiny_config("qwen2_vl", image_size=336)
    with pytest.raises(ValueError, match="max_pixels"):
        tiny_config("llava", max_pixels=1000)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        tiny_config("qwen2_5_vl", num_key_value_heads=3)
    with pytest.raises(ValueError, match="multiple of 14"):
        tiny_config("llava", image_size=100)


def test_tiny_config_applies_overrides():
    config = tiny_config("qwen2_5_vl", num_hidden_layers=8, hidden_size=128, num_attention_heads=4)
    assert config.model_type == "qwen2_5_vl"
    assert config.text_config.num_hidden_layers == 8
    assert config.text_config.rope_parameters["mrope_section"] == [4, 6, 6]  # head_dim 32 -> 16 frequencies
    assert config.vision_config.out_hidden_size == 128
    llava = tiny_config("llava", image_size=336)
    assert llava.vision_config.image_size == 336 and llava.image_seq_length == 24 * 24


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        build_tiny_model("llava", folder)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging left behind


def test_build_tiny_models_reuses_up_to_date_and_rebuilds_stale(tmp_path):
    first = build_tiny_models(tmp_path, families=("llava",))
    weights = first["llava"] / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_tiny_models(tmp_path, families=("llava",)) == first
    assert weights.stat().st_mtime_ns == stamp  # reused, not rebuilt

    marker = json.loads((first["llava"] / MARKER_NAME).read_text())
    (first["llava"] / MARKER_NAME).write_text(json.dumps({**marker, "builder_version": BUILDER_VERSION - 1}))
    build_tiny_models(tmp_path, families=("llava",))
    assert read_marker(first["llava"])["builder_version"] == BUILDER_VERSION
    assert weights.stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llava-tiny"]


def test_overrides_build_and_load(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = build_tiny_model("llava", tmp_path / "big", seed=3, num_hidden_layers=2, image_size=112)
    assert read_marker(folder) == {
        "family": "llava",
        "builder_version": BUILDER_VERSION,
        "seed": 3,
        "overrides": {"num_hidden_layers": 2, "image_size": 112},
    }
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True)
    inputs = _encode(processor, [QUESTION], [_picture(200, 150)])
    assert int((inputs["input_ids"] == _image_token_id(model)).sum()) == 8 * 8
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_every_family_states_its_expectations():
    for family in FAMILIES:
        expected = expectations(family)
        assert set(expected.image_tokens) == set(SIZES), family
        assert not expected.image_grids or set(expected.image_grids) == set(SIZES), family
        assert expected.chat is None or expected.chat.count("{question}") == 1, family
    assert expectations("paligemma").chat_for(QUESTION) is None
    assert expectations("llava").chat_for(QUESTION) == f"USER: <image>\n{QUESTION} ASSISTANT:"


def test_every_family_has_an_engine_adapter():
    from vea_engine.families import adapter_class

    for family in FAMILIES:
        adapter_class(tiny_config(family).model_type)  # ValueError when vea_engine/families lacks it


# -- each family --------------------------------------------------------------------------


def test_default_build_skips_families_whose_processor_needs_a_missing_package(monkeypatch, tmp_path, caplog):
    import importlib.util

    from vea_engine.testing.tiny_models import registry

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "num2words" else real(name, *a))
    assert missing_requirements("smolvlm") == ("num2words",) and "smolvlm" not in available_families()
    monkeypatch.setattr(registry, "FAMILIES", ("llava", "smolvlm"))
    with caplog.at_level("WARNING", logger="vea_engine.testing.tiny_models"):
        assert list(build_tiny_models(tmp_path)) == ["llava"]
    assert "smolvlm checkpoint skipped: num2words not installed" in caplog.text
    with pytest.raises(ImportError, match="pip install num2words"):
        build_tiny_models(tmp_path, families=("smolvlm",))


def test_folder_is_a_plain_checkpoint(tiny_model_dirs, family):
    folder = tiny_model_dirs[family]
    names = {p.name for p in folder.iterdir()}
    expected = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    expected |= {"processor_config.json", MARKER_NAME} | (
        {"chat_template.jinja"} if expectations(family).chat else set()
    )
    assert expected <= names
    assert read_marker(folder) == {"family": family, "builder_version": BUILDER_VERSION, "seed": 0, "overrides": {}}
    config_text = (folder / "config.json").read_text()
    assert "_name_or_path" not in config_text
    assert json.loads(config_text)["model_type"] == family
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["do_sample"] is False and generation["pad_token_id"] is not None


def test_config_highlights(loaded, family):
    model, processor = loaded.model, loaded.processor
    tokenizer = processor.tokenizer
    config = model.config
    text = config.get_text_config()
    kv_heads = text.per_layer_config[0].num_key_value_heads if family == "gemma4" else text.num_key_value_heads
    sizes = (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, kv_heads)
    assert sizes == (64, 6, 4, 2)
    assert text.vocab_size == len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    kinds = layer_kinds(model)
    attention = decoder_attention_modules(model)[kinds.attention[0]]
    gate = 2 if family in HYBRID else 1  # Qwen3.5's q_proj also yields the attention output gate
    assert attention.k_proj.out_features == 2 * 16 and attention.q_proj.out_features == gate * 4 * 16  # GQA, head 16
    assert kinds.attention == ((2, 5) if family in ATTENTION_AT_2_5 else tuple(range(6)))  # hybrids: softmax at 2, 5
    assert model.dtype == torch.float32
    image_id = tokenizer.convert_tokens_to_ids(expectations(family).image_token)
    # Gemma3Processor.image_token_id is its <start_of_image> (a transformers quirk); the tokenizer knows the real one.
    # Llama4Processor's is the <|image|> the chat template writes; the features fill its <|patch|> tokens.
    processor_id = {
        "gemma3": lambda: tokenizer.image_token_id,
        "llama4": lambda: tokenizer.convert_tokens_to_ids(processor.img_patch_token),
    }.get(family, lambda: processor.image_token_id)()
    assert _image_token_id(model) == image_id == processor_id
    assert tokenizer.eos_token_id in np.atleast_1d(model.generation_config.eos_token_id)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    vision = config.vision_config
    assert vision.num_attention_heads == 2 and vision.num_hidden_layers == 2
    if family == "llava":
        assert vision.hidden_size == 32 and (vision.image_size, vision.patch_size) == (84, 14)
        assert config.vision_feature_select_strategy == "default" and config.vision_feature_layer == -2
        assert config.image_seq_length == 36
        assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>" and tokenizer.pad_token == "<pad>"
    elif family in ("qwen2_vl", "qwen2_5_vl"):
        assert text.rope_parameters["mrope_section"] == [2, 3, 3]  # sums to head_dim / 2
        assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
        assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
        assert processor.video_processor is not None
    if family == "qwen2_vl":
        assert vision.embed_dim == 32 and vision.hidden_size == 64
    if family == "qwen2_5_vl":
        assert vision.hidden_size == 32 and vision.out_hidden_size == 64
        assert vision.fullatt_block_indexes == [1] and vision.window_size == 112
    if family == "gemma3":
        assert config.mm_tokens_per_image == 36 and (vision.image_size, vision.patch_size) == (168, 14)
        assert (
            text.sliding_window == 64
            and text.layer_types == ["sliding_attention", "sliding_attention", "full_attention"] * 2
        )
        assert tokenizer.bos_token == "<bos>" and tokenizer.boi_token == "<start_of_image>"
        assert tokenizer("x").input_ids[0] == tokenizer.bos_token_id  # Gemma's tokenizer adds BOS
    if family == "llava_next":
        assert config.image_grid_pinpoints == [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]
        assert processor.image_processor.image_grid_pinpoints == config.image_grid_pinpoints
        assert text.model_type == "mistral" and config.image_seq_length == 16
    if family == "qwen3_vl":
        assert text.rope_parameters["mrope_section"] == [4, 2, 2] and text.rope_parameters["mrope_interleaved"]
        assert (vision.patch_size, vision.spatial_merge_size, vision.deepstack_visual_indexes) == (16, 2, [0])
        assert processor.image_processor.patch_size == 16 and processor.video_processor is not None
        assert hasattr(attention, "q_norm") and hasattr(attention, "k_norm")
    if family in ("glm4v", "glm4v_moe", "glm46v"):
        rope = text.rope_parameters  # half of head_dim 16 rotated: 4 frequencies split (t, h, w)
        assert rope["partial_rotary_factor"] == 0.5 and rope["mrope_section"] == [1, 1, 2]
        assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
        assert processor.image_processor.size["longest_edge"] == 2 * 448 * 448  # the budget counts both frames
        assert attention.q_proj.bias is not None and tokenizer.pad_token == "<|endoftext|>"
        mlps = [type(layer.mlp).__name__ for layer in _text_decoder(model).layers]
        assert mlps == (
            ["Glm4vMoeTextMLP"] + ["Glm4vMoeTextMoE"] * 5 if family == "glm4v_moe" else ["Glm4vTextMLP"] * 6
        )
    if family == "llava_onevision":
        assert config.vision_aspect_ratio == "anyres_max_9" and config.vision_feature_select_strategy == "full"
        assert len(config.image_grid_pinpoints) == 36 and config.image_grid_pinpoints[-1] == [336, 336]
        assert processor.num_image_tokens == 16 and text.model_type == "qwen2"
    if family in ("idefics3", "smolvlm"):
        patch, scale = (14, 2) if family == "idefics3" else (16, 4)
        assert (vision.patch_size, config.scale_factor) == (patch, scale)
        assert processor.image_processor.size["longest_edge"] == 2 * vision.image_size
        assert processor.image_seq_len == (vision.image_size // patch // scale) ** 2
        assert tokenizer.convert_tokens_to_ids("<row_2_col_3>") != tokenizer.unk_token_id
    if family == "gemma4":  # every part of the released decoders at once; a 70-token image budget of 8-px patches
        assert text.layer_types == ["sliding_attention", "sliding_attention", "full_attention"] * 2
        assert text.kv_sharing_modes == [None, "store", "store", "reuse", "reuse", "reuse"]
        assert text.sliding_window == 48 and text.use_bidirectional_attention == "vision"
        full = _text_decoder(model).layers[2].self_attn
        assert (full.head_dim, full.k_proj.out_features, full.v_proj) == (32, 32, None)  # one K=V head of 32
        assert not hasattr(_text_decoder(model).layers[3].self_attn, "k_proj")  # KV-shared
        assert text.enable_moe_block and text.num_experts == 4 and text.hidden_size_per_layer_input == 16
        assert config.audio_config is None and (vision.patch_size, vision.pooling_kernel_size) == (8, 3)
        assert processor.image_processor.max_soft_tokens == 70 and processor.video_processor is not None
        assert tokenizer.boi_token == "<|image>" and tokenizer.eoi_token == "<image|>"
    if family == "internvl":
        assert config.downsample_ratio == 0.5 and config.image_seq_length == 16 and text.model_type == "qwen3"
        assert processor.image_processor.max_patches == 4  # crop_to_patches: off here, on in the processor call
        assert not processor.image_processor.crop_to_patches
    if family == "paligemma":
        assert text.model_type == "gemma" and processor.image_seq_length == 36
    if family == "llama4":
        kinds = ["chunked_attention", "full_attention"] * 3  # RoPE layers chunked, NoPE layers global
        assert text.layer_types == kinds and text.no_rope_layers == [1, 0] * 3 and text.attention_chunk_size == 40
        assert text.moe_layers == [1, 3, 5] and text.num_local_experts == 2 and text.attn_temperature_tuning
        assert (vision.image_size, vision.patch_size, vision.pixel_shuffle_ratio) == (112, 14, 0.5)
        assert not text.use_qk_norm and not hasattr(attention, "qk_norm")  # as Maverick
        assert processor.image_processor.max_patches == 6 and processor.patch_size == 14
        assert tokenizer.bos_token == "<|begin_of_text|>" and tokenizer.pad_token == "<|finetune_right_pad|>"
        assert tokenizer.convert_tokens_to_ids("<loc0512>") < len(tokenizer)  # detection tokens are in the vocab
    if family == "mistral3":
        assert text.model_type == "mistral" and vision.model_type == "pixtral" and config.spatial_merge_size == 2
        assert (vision.patch_size, processor.patch_size, processor.spatial_merge_size) == (14, 14, 2)
        assert processor.image_processor.size["longest_edge"] == vision.image_size == 168
        ids = [tokenizer.convert_tokens_to_ids(t) for t in ("[INST]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]")]
        assert ids == [3, 10, 11, 12, 13] == [3, config.image_token_id, tokenizer.pad_token_id, 12, 13]  # Tekken's


def test_chat_template_matches_the_real_one(loaded, family):
    expected = expectations(family).chat_for(QUESTION)
    if expected is None:
        assert loaded.processor.chat_template is None
        return
    assert _chat(loaded.processor) == expected


def test_tokenizer_round_trip(loaded, family):
    tokenizer = loaded.processor.tokenizer
    ids = tokenizer("What is the Zebra code 4821?", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    unknown = tokenizer("price: 5€", add_special_tokens=False)["input_ids"]
    if family in HYBRID:  # transformers rebuilds Qwen3.5's tokenizer as byte-level BPE: lossless, no unknown symbol
        assert tokenizer.decode(ids) == "What is the Zebra code 4821?" and len(ids) < len("What is the Zebra code")
        assert tokenizer.decode(unknown) == "price: 5€" and tokenizer.unk_token_id not in unknown
    else:
        assert tokenizer.decode(ids) == "what is the zebra code 4821?"
        assert unknown[-1] == tokenizer.unk_token_id
    for token in (expectations(family).image_token, tokenizer.eos_token, tokenizer.pad_token):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]


@pytest.mark.parametrize("size", SIZES, ids=["200x150", "448x448"])
def test_image_token_count_matches_geometry(loaded, family, size):
    processor, model = loaded.processor, loaded.model
    expected = expectations(family)
    inputs = _encode(processor, [QUESTION], [_picture(*size)])
    positions = (inputs["input_ids"][0] == _image_token_id(model)).nonzero().flatten()
    if family == "llava":
        assert tuple(inputs["pixel_values"].shape) == (1, 3, 84, 84)
    if expected.image_grids:  # Qwen-style families: the processor's patch grid, then merged tokens
        grid = tuple(int(v) for v in inputs["image_grid_thw"][0])
        assert grid == expected.image_grids[size]
        assert math.prod(grid) // processor.image_processor.merge_size**2 == expected.image_tokens[size]
    count = expected.image_tokens[size]
    assert len(positions) == count
    if not expected.split_prompt:
        assert torch.equal(positions, torch.arange(positions[0], positions[0] + count))  # one contiguous block


def test_forward_is_finite_and_sees_the_image(loaded):
    processor, model = loaded.processor, loaded.model
    logits = []
    for seed in (1, 2):
        inputs = _encode(processor, [QUESTION], [_picture(200, 150, seed)])
        with torch.no_grad():
            out = model(**inputs).logits  # [1, N, vocab]
        assert out.shape == (1, inputs["input_ids"].shape[1], model.config.get_text_config().vocab_size)
        assert torch.isfinite(out).all()
        logits.append(out[0, -1])
    assert (logits[0] - logits[1]).abs().max() > 1e-3  # image features reach the text model


def test_greedy_generate(loaded):
    processor, model = loaded.processor, loaded.model
    inputs = _encode(processor, [QUESTION], [_picture(200, 150)])
    runs = [model.generate(**inputs, max_new_tokens=5, do_sample=False) for _ in range(2)]
    n = inputs["input_ids"].shape[1]
    assert runs[0].shape[0] == 1 and n < runs[0].shape[1] <= n + 5
    assert torch.equal(runs[0], runs[1])
    assert isinstance(processor.batch_decode(runs[0][:, n:], skip_special_tokens=True)[0], str)


def test_left_padded_batch_matches_single_runs(loaded, family):
    processor, model = loaded.processor, loaded.model
    questions = ["What is the code?", "Describe the picture in one short sentence please."]
    images = [_picture(200, 150, 1), _picture(150, 200, 2)]
    batch = _encode(processor, questions, images)
    singles = [_encode(processor, [q], [im]) for q, im in zip(questions, images, strict=True)]
    mask = batch["attention_mask"]  # [2, N]
    shorter = int(singles[0]["input_ids"].shape[1] > singles[1]["input_ids"].shape[1])
    assert mask[shorter, 0] == 0 and mask[1 - shorter].all() and mask[:, -1].all()  # left padding
    for i, single in enumerate(singles):
        assert (batch["input_ids"][i] == _image_token_id(model)).sum() == (
            single["input_ids"] == _image_token_id(model)
        ).sum()
    with torch.no_grad():
        batched = model(**batch).logits[:, -1]  # [2, vocab]
        for i, single in enumerate(singles):
            alone = model(**single).logits[0, -1]
            torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=1e-4)
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert generated.shape[0] == 2


def test_same_seed_same_weights(tiny_model_dirs, family, tmp_path):
    """A fresh build equals the session's checkpoint (maybe built by an earlier session) byte for byte."""
    from safetensors.torch import load_file

    reference = load_file(tiny_model_dirs[family] / "model.safetensors")
    again = load_file(build_tiny_model(family, tmp_path / "again", seed=0) / "model.safetensors")
    assert reference.keys() == again.keys()
    assert all(torch.equal(reference[k], again[k]) for k in reference)
    tokenizer = (tmp_path / "again" / "tokenizer.json").read_bytes()
    assert tokenizer == (tiny_model_dirs[family] / "tokenizer.json").read_bytes()


def test_another_seed_other_weights(tiny_model_dirs, tmp_path):
    """The seed reaches the weights (one family: every family's weights are drawn by the same ``_init_weights``)."""
    from safetensors.torch import load_file

    reference = load_file(tiny_model_dirs["llava"] / "model.safetensors")
    other = load_file(build_tiny_model("llava", tmp_path / "other", seed=1) / "model.safetensors")
    assert reference.keys() == other.keys()
    embed = next(k for k in reference if k.endswith("embed_tokens.weight"))
    assert not torch.equal(reference[embed], other[embed])


def test_sdpa_matches_eager_and_attention_is_not_uniform(loaded):
    from transformers import AutoModelForImageTextToText

    processor, model = loaded.processor, loaded.model
    eager = AutoModelForImageTextToText.from_pretrained(
        loaded.folder, local_files_only=True, attn_implementation="eager"
    ).eval()
    inputs = _encode(processor, [QUESTION], [_picture(200, 150)])
    with torch.no_grad():
        fast = model(**inputs).logits
        slow = eager(**inputs, output_attentions=True)
    torch.testing.assert_close(fast, slow.logits, atol=1e-4, rtol=1e-4)
    assert len(slow.attentions) == len(layer_kinds(model).attention)  # softmax layers only (hybrid: 2 of 6)
    for layer, attention in enumerate(slow.attentions):  # [1, heads, N, N]
        row = attention[0, :, -1].mean(0)  # [N] head-mean attention of the last prompt token
        n = int((row > 0).sum())  # keys it can see (Gemma 3's sliding layers: the window)
        entropy = float(-(row * row.clamp_min(1e-12).log()).sum()) / math.log(n)
        assert row.max() > 3.0 / n and entropy < 0.95, f"layer {layer}: near-uniform attention"
