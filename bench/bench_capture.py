"""Attention capture cost vs a plain SDPA forward and vs eager ``output_attentions``.

A random-weight Qwen2.5-VL (8 decoder layers, GQA) on an 80x80-patch image
(1600 image tokens after the 2x2 merge, ~1660 tokens in all). Variants:

  (a) sdpa        plain forward on SDPA
  (b) eager+attn  eager forward with output_attentions=True (every layer's [B, H, N, N])
  (c) capture     SDPA forward + our capture of the last-token row at 4 layers
  (d) +early exit the same, stopping after the deepest captured layer (the engine's default on SDPA)
  (e) eager capture eager kernel (no output_attentions) + capture from its own weights, early exit:
                  what ``attention="auto"`` runs at the paper's resolution (bit-exact with the
                  reference); compare at ``--grid 36`` (324 image tokens, the paper's 512*512 cap)

Peak memory is the peak of live tensor bytes during one forward (CPU: allocator
events recorded by torch.profiler, exact and repeatable; CUDA:
``max_memory_allocated``); time is the best of ``--repeats`` interleaved runs.
Ratios are to (a).

Run: ``python bench/bench_capture.py [--repeats 3] [--grid 80] [--layers 8] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import time

import torch

CAPTURE_LAYERS = (2, 3, 4, 5)


def build(grid: int, layers: int, device: str, dtype: torch.dtype):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=1024,
            hidden_size=512,
            intermediate_size=1408,
            num_hidden_layers=layers,
            num_attention_heads=8,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=2,
            out_hidden_size=512,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[1],
        ),
        image_token_id=1000,
        video_token_id=1001,
        vision_start_token_id=1002,
        vision_end_token_id=1003,
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


def tensor_peak_bytes(fn) -> int:
    """Peak of live tensor bytes while ``fn`` runs, relative to before (see module docstring)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def best_times(runs: dict, repeats: int, device: str) -> dict[str, float]:
    """Best wall time of each zero-argument function over ``repeats`` interleaved rounds
    (interleaved, so machine load and drift hit every variant alike)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            result = fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            del result
    return {name: min(values) for name, values in times.items()}


def variants(model, inputs) -> dict:
    """The four forward passes being compared, as zero-argument functions."""
    from vea_engine.capture import StopForward, capture_attention_rows

    def sdpa():
        with torch.inference_mode():
            model(**inputs, use_cache=False, logits_to_keep=1)

    def eager():
        model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                return model(**inputs, use_cache=False, logits_to_keep=1, output_attentions=True).attentions
        finally:
            model.set_attn_implementation("sdpa")

    def capture(exit_early=False):
        with torch.inference_mode(), capture_attention_rows(model, CAPTURE_LAYERS, stop_after_last=exit_early) as rec:
            try:
                model(**inputs, use_cache=False, logits_to_keep=1)
            except StopForward:
                pass
        return rec.stacked()

    def eager_capture():
        model.set_attn_implementation("eager")
        try:
            return capture(True)
        finally:
            model.set_attn_implementation("sdpa")

    return {
        "sdpa": sdpa,
        "eager": eager,
        "capture": capture,
        "capture+exit": lambda: capture(True),
        "eager capture": eager_capture,
    }


def parse_arguments(description: str, repeats: int) -> argparse.Namespace:
    """The options every benchmark on :func:`build`'s model takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=80, help="patches per side (image tokens = (grid/2)^2)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def measure(args: argparse.Namespace, make_variants) -> tuple[dict, int, dict, dict]:
    """Build the model, warm every variant up, then time them (best of ``--repeats``, interleaved) and
    take their tensor peaks: ``(inputs, n_image, best seconds, peak bytes)``."""
    model, inputs, n_image = build(args.grid, args.layers, args.device, torch.float32)
    runs = make_variants(model, inputs)
    for fn in runs.values():
        fn()  # warm-up
    best = best_times(runs, args.repeats, args.device)
    peaks = {name: tensor_peak_bytes(fn) for name, fn in runs.items()}
    return inputs, n_image, best, peaks


def print_table(labels: dict[str, str], best: dict, peaks: dict, base: str, peak_digits: int = 2) -> None:
    """One row per variant: time, peak, and both as ratios to variant ``base``."""
    width = max(len(label) for label in labels.values()) + 2
    print(f"{'variant':<{width}}{'time (s)':>10}{'peak (MiB)':>12}{'time/(a)':>10}{'peak/(a)':>10}")
    for name, label in labels.items():
        print(
            f"{label:<{width}}{best[name]:>10.3f}{peaks[name] / 2**20:>12.1f}"
            f"{best[name] / best[base]:>10.2f}{peaks[name] / peaks[base]:>10.{peak_digits}f}"
        )


def main() -> None:
    args = parse_arguments(__doc__, repeats=3)
    inputs, n_image, best, peaks = measure(args, variants)
    print(
        f"Qwen2.5-VL random weights, {args.layers} layers, {inputs['input_ids'].shape[1]} tokens "
        f"({n_image} image), device={args.device}, fp32, capture layers={list(CAPTURE_LAYERS)}"
    )
    labels = {
        "sdpa": "(a) sdpa",
        "eager": "(b) eager+attn",
        "capture": "(c) capture",
        "capture+exit": "(d) +early exit",
        "eager capture": "(e) eager capture",
    }
    print_table(labels, best, peaks, "sdpa", peak_digits=3)
    print("targets: (c)/(a) <= 1.10 for time and peak memory")


if __name__ == "__main__":
    main()
