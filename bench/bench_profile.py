"""Profiling cost: one forward capturing every layer's last-token row vs eager ``output_attentions``.

Layer profiling (paper step 1) needs, per sample, the last prompt token's head-mean
attention over the image tokens at EVERY decoder layer. Two ways to get it:

  (a) capture   SDPA forward + :func:`vea_engine.capture.capture_attention_rows` on all
                layers (what :func:`vea_engine.profiling.profile_layers` does); extra
                memory O(layers x heads x N) for the rows
  (b) eager     eager forward with ``output_attentions=True`` (the reference code):
                every layer's ``[B, H, N, N]`` map is materialised and returned

Model: the random-weight Qwen2.5-VL of ``bench_capture.build`` (GQA, M-RoPE), by default
8 decoder layers and an 80x80-patch image (1600 image tokens, ~1660 in all).

Peak memory is the peak of live tensor bytes during one forward, relative to before
(CPU: allocator events recorded by ``torch.profiler``, exact and repeatable; CUDA:
``max_memory_allocated``); time is the best of ``--repeats`` interleaved runs. The two
variants' rows are compared too (they must agree to float32 round-off).

Run: ``python bench/bench_profile.py [--grid 80] [--layers 8] [--repeats 3] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_capture, also when run from elsewhere
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # vea_engine

from bench_capture import best_times, build, tensor_peak_bytes


def variants(model, inputs, layers: int) -> dict:
    """Both ways to get ``[L, n_image]`` profiling rows, as zero-argument functions."""
    from vea_engine.capture import capture_attention_rows

    image = (inputs["input_ids"][0] == 1000).nonzero().flatten()  # [n_image] positions of the image tokens

    def capture() -> torch.Tensor:
        with torch.inference_mode(), capture_attention_rows(model, range(layers)) as recorder:
            model(**inputs, use_cache=False, logits_to_keep=1)
        return recorder.stacked()[:, 0, -1][:, image]  # [L, B, R, K] -> [L, n_image]

    def eager() -> torch.Tensor:
        model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                out = model(**inputs, use_cache=False, logits_to_keep=1, output_attentions=True)
            rows = torch.stack([a[0, :, -1].float().mean(0) for a in out.attentions])  # L x [B, H, N, N] -> [L, N]
            return rows[:, image]
        finally:
            model.set_attn_implementation("sdpa")

    return {"capture": capture, "eager": eager}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=80, help="patches per side (image tokens = (grid/2)^2)")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers (all are profiled)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, inputs, n_image = build(args.grid, args.layers, args.device, torch.float32)
    runs = variants(model, inputs, args.layers)
    rows = {name: fn() for name, fn in runs.items()}  # warm-up, and the rows to compare
    best = best_times(runs, args.repeats, args.device)
    peaks = {name: tensor_peak_bytes(fn) for name, fn in runs.items()}
    diff = (rows["capture"].double() - rows["eager"].double()).abs().max().item()
    tokens = int(inputs["input_ids"].shape[1])
    print(
        f"Qwen2.5-VL random weights, {args.layers} layers (all profiled), {tokens} tokens ({n_image} image), "
        f"device={args.device}, best of {args.repeats}"
    )
    print(f"{'variant':<24}{'time (s)':>10}{'peak (MiB)':>12}")
    for name, label in (("capture", "(a) capture all layers"), ("eager", "(b) eager all layers")):
        print(f"{label:<24}{best[name]:>10.3f}{peaks[name] / 2**20:>12.1f}")
    print(
        f"eager / capture: time x{best['eager'] / best['capture']:.2f}, "
        f"peak memory x{peaks['eager'] / max(peaks['capture'], 1):.2f}"
    )
    print(f"max |capture - eager| over the profiled rows: {diff:.2e}")


if __name__ == "__main__":
    main()
