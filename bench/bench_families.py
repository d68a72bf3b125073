"""Attention capture vs eager ``output_attentions`` on tiled VLM families, as ratios to plain SDPA.

Default (CPU): a LLaVA-NeXT-shaped random-weight checkpoint -- real CLIP geometry
(336-px tiles of 14-px patches, llava-v1.6 pinpoints), a small text decoder -- on a
672 x 672 image, the largest anyres grid: 576 base tokens + 48 x 48 tile tokens +
48 newlines (~2990 tokens in all). It is built with the tiny-model builder (saved
and loaded like a user checkpoint) and the prompt goes through the family adapter,
exactly as in ``extract_attention``. Variants, each in its own process:

  (a) sdpa          plain forward on SDPA
  (b) eager         eager forward with output_attentions=True (every layer's [B, H, N, N];
                    the reference VEA code's way, which needs a delegate model for LLaVA-NeXT)
  (c) capture       SDPA forward + capture of the last-token row at 4 layers
  (d) capture+exit  the same, stopping after the deepest captured layer (the engine's default)

Peak memory is the peak of live tensor bytes during one forward (CPU: allocator events
from torch.profiler; CUDA: ``max_memory_allocated``), as in ``bench_capture.py``; time is
the best of ``--repeats`` runs. Ratios are to (a).

``--device cuda --real-size`` instead builds 7B-shaped random-weight models of every
family in memory (32 decoder layers of width 4096, the released vision towers and
input resolutions, the tiny tokenizer's small vocabulary) and runs the same variants
on each at its largest usual input; it needs a GPU with ~40 GB. ``--real-size
--dry-run`` (any device) only builds the configs, processors and inputs and
instantiates each model on the ``meta`` device, printing sizes: a check of the
real-size path without a GPU. Never run by the test suite.

Run: ``python bench/bench_families.py [--repeats 2] [--layers 8]``
     ``python bench/bench_families.py --device cuda --real-size [--families gemma3,llava_next]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_capture, also when run from elsewhere
sys.path.insert(0, str(REPO))  # vea_engine

from bench_capture import best_times, tensor_peak_bytes  # noqa: E402

VARIANTS = ("sdpa", "eager", "capture", "capture+exit")
QUESTION = "What is written on the sign in the top left corner of the picture?"

#: The CPU benchmark's LLaVA-NeXT-shaped checkpoint (tiny-model overrides): real CLIP input geometry,
#: a narrow vision tower, a multi-head text decoder.
CPU_LLAVA_NEXT = {
    "image_size": 336,
    "hidden_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "intermediate_size": 1408,
    "vision_hidden_size": 64,
    "vision_intermediate_size": 128,
    "max_position_embeddings": 8192,
}

#: 7B-shaped text decoders (Llama-2-7B / Mistral-7B widths) and the released vision towers.
_DECODER_7B = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
}
_CLIP_L = {
    "vision_hidden_size": 1024,
    "vision_num_hidden_layers": 23,
    "vision_num_attention_heads": 16,
    "vision_intermediate_size": 4096,
}
_SIGLIP_SO400M = {
    "vision_hidden_size": 1152,
    "vision_num_hidden_layers": 26,
    "vision_num_attention_heads": 16,
    "vision_intermediate_size": 4304,
}
_QWEN_VIT = {
    "vision_hidden_size": 1280,
    "vision_num_hidden_layers": 32,
    "vision_num_attention_heads": 16,
    "vision_intermediate_size": 3420,
}
#: family -> (tiny-model overrides, input (W, H), processor / config adjustments beyond TinySpec)
REAL_SIZE = {
    "llava": ({**_DECODER_7B, **_CLIP_L, "num_key_value_heads": 32, "image_size": 336}, (672, 672), {}),
    "llava_next": ({**_DECODER_7B, **_CLIP_L, "image_size": 336}, (672, 672), {}),
    "qwen2_vl": (
        {**_DECODER_7B, **_QWEN_VIT, "vision_intermediate_size": 5120, "max_pixels": 1280 * 28 * 28},
        (1280, 960),
        {},
    ),
    "qwen2_5_vl": ({**_DECODER_7B, **_QWEN_VIT, "max_pixels": 1280 * 28 * 28}, (1280, 960), {}),
    "qwen3_vl": (
        {
            **_DECODER_7B,
            "vision_hidden_size": 1152,
            "vision_num_hidden_layers": 27,
            "vision_num_attention_heads": 16,
            "vision_intermediate_size": 4304,
            "max_pixels": 1280 * 32 * 32,
        },
        (1280, 960),
        {},
    ),
    "gemma3": ({**_DECODER_7B, **_SIGLIP_SO400M, "image_size": 896}, (896, 896), {"gemma3_tokens": 256}),
    "llava_onevision": ({**_DECODER_7B, **_SIGLIP_SO400M, "image_size": 384}, (1152, 1152), {}),
    "idefics3": ({**_DECODER_7B, **_SIGLIP_SO400M, "image_size": 364}, (1456, 1092), {"split_tiles": 4}),
    "smolvlm": ({**_DECODER_7B, **_SIGLIP_SO400M, "image_size": 512}, (2048, 1536), {"split_tiles": 4}),
    "internvl": (
        {
            **_DECODER_7B,
            "vision_hidden_size": 1024,
            "vision_num_hidden_layers": 24,
            "vision_num_attention_heads": 16,
            "vision_intermediate_size": 4096,
            "image_size": 448,
        },
        (1344, 896),
        {"max_tiles": 12},
    ),
    "paligemma": ({**_DECODER_7B, **_SIGLIP_SO400M, "image_size": 896}, (896, 896), {}),
}


# -- inputs ---------------------------------------------------------------------------------


def _picture(width: int, height: int) -> np.ndarray:
    """A deterministic RGB picture (structure for the vision tower), ``[H, W, 3]`` uint8."""
    rng = np.random.default_rng(0)
    array = (rng.random((height, width, 3)) * 60 + 90).astype(np.uint8)
    array[height // 8 : height // 4, width // 8 : width // 2] = (250, 30, 30)
    return array


def _inputs(vlm, size: tuple[int, int], device: str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[dict, int]:
    """Processor inputs for one ``size = (W, H)`` picture, encoded and laid out like ``extract_attention`` does."""
    from PIL import Image

    from vea_engine.config import build_prompt

    picture = _picture(*size)
    canvas = vlm.adapter.render(picture)
    inputs = vlm.adapter.encode([Image.fromarray(picture)], [build_prompt(QUESTION)])  # on the CPU
    geometry = vlm.adapter.token_layout(inputs, 0, canvas.frame)
    moved = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved, geometry.n_tokens


def _capture_layers(attention: tuple[int, ...]) -> tuple[int, ...]:
    """Four evenly spread middle softmax-attention layers (VEA selects 3-7 layers around the middle)."""
    return tuple(sorted({attention[round(len(attention) * f)] for f in (0.4, 0.5, 0.6, 0.7)}))


# -- one variant in this process --------------------------------------------------------------


def measure(model, inputs: dict, variant: str, layers: tuple[int, ...], repeats: int, device: str) -> dict:
    """Best time and peak memory growth of one forward of ``variant`` (model already on its attention kernel)."""
    from vea_engine.capture import StopForward, capture_attention_rows

    def forward():
        with torch.inference_mode():
            if variant in ("sdpa", "eager"):
                return model(**inputs, use_cache=False, logits_to_keep=1, output_attentions=variant == "eager")
            with capture_attention_rows(model, layers, stop_after_last=variant == "capture+exit") as recorder:
                try:
                    model(**inputs, use_cache=False, logits_to_keep=1)
                except StopForward:
                    pass
            return recorder.stacked()

    forward()  # warm-up (its result is dropped at once)
    best = best_times({variant: forward}, repeats, device)[variant]
    gc.collect()
    peak = tensor_peak_bytes(forward)
    return {"variant": variant, "time_s": best, "peak_bytes": int(peak)}


def run_cpu_variant(args) -> dict:
    from vea_engine.loading import load_vlm

    attn = "eager" if args.variant == "eager" else "sdpa"
    vlm = load_vlm(args.checkpoint, dtype="float32", attn_implementation=attn)
    inputs, n_image = _inputs(vlm, (672, 672))
    result = measure(vlm.model, inputs, args.variant, _capture_layers(vlm.layer_kinds.attention), args.repeats, "cpu")
    return {**result, "tokens": int(inputs["input_ids"].shape[1]), "image_tokens": n_image}


def _real_size_vlm(family: str, device: str, dtype: torch.dtype, attn: str):
    """A 7B-shaped random-weight ``family`` model in memory (``device='meta'``: no weights at all)."""
    from transformers import AutoModelForImageTextToText

    from vea_engine.families import get_adapter
    from vea_engine.loading import VLM
    from vea_engine.testing.tiny_models import tiny_config, tiny_processor

    overrides, size, extra = REAL_SIZE[family]
    config = tiny_config(family, **overrides)
    processor = tiny_processor(family, **overrides)
    processor.tokenizer.padding_side = "left"
    if "gemma3_tokens" in extra:  # the released pooling: 64 x 64 patches -> 16 x 16 tokens (tiny: 2 x 2 pooling)
        from transformers import Gemma3Processor

        config.mm_tokens_per_image = extra["gemma3_tokens"]
        processor = Gemma3Processor(
            image_processor=processor.image_processor,
            tokenizer=processor.tokenizer,
            chat_template=processor.chat_template,
            image_seq_length=extra["gemma3_tokens"],
        )
    if "split_tiles" in extra:  # Idefics3 / SmolVLM: up to 4 tiles per side
        processor.image_processor.size = {"longest_edge": extra["split_tiles"] * overrides["image_size"]}
    if "max_tiles" in extra:  # InternVL: up to 12 tiles
        processor.image_processor.max_patches = extra["max_tiles"]
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn).eval()
    from vea_engine.decoder import text_decoder_layers

    adapter = get_adapter(processor, config)
    layers = len(text_decoder_layers(model))
    return VLM(model, processor, adapter, f"random 7B-shaped {family}", family, layers), size


def run_real_variant(args) -> dict:
    dtype = torch.bfloat16
    attn = "eager" if args.variant == "eager" else "sdpa"
    vlm, size = _real_size_vlm(args.family, args.device, dtype, attn)
    inputs, n_image = _inputs(vlm, size, args.device, dtype)
    result = measure(
        vlm.model, inputs, args.variant, _capture_layers(vlm.layer_kinds.attention), args.repeats, args.device
    )
    return {**result, "tokens": int(inputs["input_ids"].shape[1]), "image_tokens": n_image}


def dry_run(families: list[str]) -> None:
    """Build every real-size config, processor and input; instantiate the models on ``meta``."""
    print(f"{'family':<17}{'params (B)':>11}{'tokens':>8}{'image tokens':>14}  canvas (H, W)")
    for family in families:
        vlm, size = _real_size_vlm(family, "meta", torch.bfloat16, "sdpa")
        inputs, n_image = _inputs(vlm, size)
        params = sum(p.numel() for p in vlm.model.parameters()) / 1e9
        canvases = vlm.adapter.render(_picture(*size)).frame.canvas_hw
        print(f"{family:<17}{params:>11.2f}{int(inputs['input_ids'].shape[1]):>8}{n_image:>14}  {canvases}")


# -- driver -------------------------------------------------------------------------------------


def _subprocess(args, variant: str, **extra: str) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--repeats", str(args.repeats), "--device", args.device]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", value]
    if args.real_size:
        cmd.append("--real-size")
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, cwd=REPO)
    if done.returncode != 0:
        return {"variant": variant, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(title: str, results: dict[str, dict]) -> None:
    ref = results["sdpa"]
    print(title)
    print(f"{'variant':<16}{'time (s)':>10}{'peak (MiB)':>12}{'time/(a)':>10}{'peak/(a)':>10}")
    for name, label in zip(VARIANTS, ("(a) sdpa", "(b) eager", "(c) capture", "(d) +exit"), strict=True):
        r = results[name]
        if "error" in r:
            print(f"{label:<16}  failed: {r['error']}")
            continue
        print(
            f"{label:<16}{r['time_s']:>10.3f}{r['peak_bytes'] / 2**20:>12.1f}"
            f"{r['time_s'] / ref['time_s']:>10.2f}{r['peak_bytes'] / max(ref['peak_bytes'], 1):>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8, help="text decoder layers of the CPU checkpoint")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (with --real-size)")
    parser.add_argument("--real-size", action="store_true", help="7B-shaped models of every family (GPU)")
    parser.add_argument("--dry-run", action="store_true", help="with --real-size: build on 'meta', no forward")
    parser.add_argument("--families", default=None, help="comma list for --real-size (default: all)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process
        result = run_real_variant(args) if args.real_size else run_cpu_variant(args)
        print(json.dumps(result))
        return

    if args.real_size:
        from vea_engine.testing.tiny_models import available_families

        families = args.families.split(",") if args.families else [f for f in REAL_SIZE if f in available_families()]
        if args.dry_run:
            dry_run(families)
            return
        if not args.device.startswith("cuda") or not torch.cuda.is_available():
            raise SystemExit("--real-size needs --device cuda and a GPU (or --dry-run to only build the models).")
        for family in families:
            results = {v: _subprocess(args, v, family=family) for v in VARIANTS}
            ref = results["sdpa"]
            title = (
                f"\n{family}: 7B-shaped random weights, bf16, {ref.get('tokens')} tokens "
                f"({ref.get('image_tokens')} image), capture layers {list(_capture_layers(32))}"
            )
            _table(title, results)
        return

    from vea_engine.testing.tiny_models import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="vea-bench-") as tmp:
        checkpoint = build_tiny_model(
            "llava_next", Path(tmp) / "llava_next", num_hidden_layers=args.layers, **CPU_LLAVA_NEXT
        )
        results = {v: _subprocess(args, v, checkpoint=str(checkpoint)) for v in VARIANTS}
    ref = results["sdpa"]
    _table(
        f"LLaVA-NeXT-shaped random weights (336-px CLIP tiles, llava-v1.6 pinpoints, 672x672 image = 2x2 tiles), "
        f"{args.layers} layers x 8 heads, width 512, {ref.get('tokens')} tokens ({ref.get('image_tokens')} image), "
        f"device={args.device}, capture layers {list(_capture_layers(args.layers))}",
        results,
    )
    print("targets: (c)/(a) <= 1.10 for time and peak memory")


if __name__ == "__main__":
    main()
