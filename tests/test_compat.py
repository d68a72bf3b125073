"""The transformers internals behind capture exist in the installed transformers (vea_engine.compat)."""

from __future__ import annotations

import transformers

from vea_engine import compat


def test_installed_transformers_is_the_checked_major_version():
    assert int(transformers.__version__.split(".")[0]) == compat.TRANSFORMERS_MAJOR, transformers.__version__


def test_attn_implementation_field_switches_and_restores(tiny_model_dirs):
    from vea_engine.loading import load_vlm

    vlm = load_vlm(tiny_model_dirs["qwen2_5_vl"], dtype="float32", attn_implementation="sdpa")
    config = vlm.model.config.get_text_config()
    saved = compat.raw_attn_implementation(config)
    assert compat.get_attn_implementation(config) == "sdpa"
    compat.set_attn_implementation(config, "eager")
    assert compat.get_attn_implementation(config) == "eager"
    compat.set_attn_implementation(config, saved)
    assert compat.get_attn_implementation(config) == "sdpa" and compat.raw_attn_implementation(config) == saved


def test_registries_and_eager_kernels_are_reachable(tiny_model_dirs):
    from vea_engine.decoder import decoder_attention_modules
    from vea_engine.loading import load_vlm

    kernels = compat.mask_kernels()
    assert {"sdpa", "eager", "flash_attention_2"} <= set(kernels)
    assert compat.is_registered("sdpa") and not compat.is_registered("no-such-kernel")
    vlm = load_vlm(tiny_model_dirs["llava"], dtype="float32")
    module = decoder_attention_modules(vlm.model)[0]
    assert compat.attention_function("eager", module).__name__ == "eager_attention_forward"
    assert callable(compat.attention_function("sdpa", module))
