"""Attention capture cost vs a plain SDPA forward and vs eager ``output_attentions``.

A random-weight Qwen2.5-VL (8 decoder layers, GQA) on an 80x80-patch image
(1600 image tokens after the 2x2 merge, ~1670 tokens in all). Variants:

  (a) sdpa      plain forward on SDPA
  (b) eager     eager forward with output_attentions=True (every layer's [B, H, N, N])
  (c) capture   SDPA forward + our capture of the last-token row at 4 layers
  (d) capture+exit   the same, stopping after the deepest captured layer (our default)

Each variant runs in its own process; peak memory is the growth of the process's
peak resident set during the forward (``/proc/self/clear_refs`` resets the peak
first), time is the best of ``--repeats`` runs. Ratios are to (a).

Run: ``python bench/bench_capture.py [--repeats 3] [--grid 80] [--layers 8]``.
On a GPU (``--device cuda``) peak memory is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

CAPTURE_LAYERS = (2, 3, 4, 5)


def build(grid: int, layers: int, device: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=1024, hidden_size=512, intermediate_size=1408, num_hidden_layers=layers,
            num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=8192,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
        ),
        vision_config=dict(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=512, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
        ),
        image_token_id=1000, video_token_id=1001, vision_start_token_id=1002, vision_end_token_id=1003,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).to(device, dtype).eval()
    n_image = (grid // 2) ** 2
    ids = [5] * 20 + [1002] + [1000] * n_image + [1003] + list(range(10, 50))
    inputs = {
        "input_ids": torch.tensor([ids], device=device),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
        "pixel_values": torch.randn(grid * grid, 3 * 2 * 14 * 14, device=device, dtype=dtype),
        "image_grid_thw": torch.tensor([[1, grid, grid]], device=device),
    }
    return model, inputs, n_image


def _current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    return 0


def run_variant(variant: str, args) -> dict:
    from vea_engine.capture import StopForward, capture_attention_rows

    device = args.device
    model, inputs, n_image = build(args.grid, args.layers, device, torch.float32)
    if variant == "eager":
        model.set_attn_implementation("eager")

    def forward():
        with torch.inference_mode():
            if variant in ("sdpa", "eager"):
                out = model(**inputs, use_cache=False, logits_to_keep=1, output_attentions=variant == "eager")
                return out
            exit_early = variant == "capture+exit"
            with capture_attention_rows(model, CAPTURE_LAYERS, stop_after_last=exit_early) as rec:
                try:
                    model(**inputs, use_cache=False, logits_to_keep=1)
                except StopForward:
                    pass
            return rec.stacked()

    forward()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = forward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del result
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = forward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        import gc

        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS counter
        base = _current_rss()
        result = forward()
        peak = _peak_rss() - base
    return {"variant": variant, "time_s": min(times), "peak_bytes": peak, "tokens": int(inputs["input_ids"].shape[1]),
            "image_tokens": n_image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=80, help="patches per side (tokens = (grid/2)^2)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args)))
        return
    results = {}
    for variant in ("sdpa", "eager", "capture", "capture+exit"):
        cmd = [sys.executable, __file__, "--variant", variant, "--grid", str(args.grid), "--layers", str(args.layers),
               "--repeats", str(args.repeats), "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    ref = results["sdpa"]
    print(f"Qwen2.5-VL random weights, {args.layers} layers, {ref['tokens']} tokens ({ref['image_tokens']} image), "
          f"device={args.device}, capture layers={list(CAPTURE_LAYERS)}")
    print(f"{'variant':<14}{'time (s)':>10}{'peak (MiB)':>12}{'time/(a)':>10}{'peak/(a)':>10}")
    for name, label in (("sdpa", "(a) sdpa"), ("eager", "(b) eager"), ("capture", "(c) capture"),
                        ("capture+exit", "(d) +exit")):
        r = results[name]
        print(f"{label:<14}{r['time_s']:>10.3f}{r['peak_bytes'] / 2**20:>12.1f}"
              f"{r['time_s'] / ref['time_s']:>10.2f}{r['peak_bytes'] / max(ref['peak_bytes'], 1):>10.2f}")
    print("targets: (c)/(a) <= 1.10 for time and peak memory")


if __name__ == "__main__":
    main()
