"""Peak memory and time of gradient x input vs one plain forward pass.

The random-weight Qwen2.5-VL of ``bench_capture.py`` (8 decoder layers, hidden 512,
GQA) on an 80x80-patch image: 1600 image tokens after the 2x2 merge, ~1660 tokens in
all. Variants:

  (a) forward        plain SDPA forward, inference mode, last position's logits only
  (b) grad x input   forward + backward of the first answer token's log-probability
                     (``vea_engine.gradient.input_gradients``), decoder layers checkpointed
  (c) no checkpoint  the same without checkpointing (every layer's activations kept)

Peak memory is the peak of live tensor bytes during the call, relative to before it
(CPU: allocator events recorded by torch.profiler, including the backward pass, exact
and repeatable; CUDA: ``max_memory_allocated``), the measure of ``bench_capture.py``.
The model's weights are not counted (they exist before the call). Time is the best of
``--repeats`` interleaved runs. Ratios are to (a); the last line is (b)/(a).

Run: ``python bench/bench_gradient.py [--repeats 2] [--grid 80] [--layers 8] [--device cuda]``.
"""

from __future__ import annotations

import argparse

import torch
from bench_capture import best_times, build, tensor_peak_bytes

IMAGE_TOKEN_ID = 1000  # the image placeholder id of bench_capture's config


def variants(model, inputs) -> dict:
    """The three passes being compared, as zero-argument functions."""
    from vea_engine.gradient import input_gradients

    positions = [row.nonzero(as_tuple=True)[0] for row in inputs["input_ids"] == IMAGE_TOKEN_ID]

    def forward():
        with torch.inference_mode():
            model(**inputs, use_cache=False, logits_to_keep=1)

    return {
        "forward": forward,
        "grad": lambda: input_gradients(model, inputs, positions, checkpoint=True),
        "grad, no checkpoint": lambda: input_gradients(model, inputs, positions, checkpoint=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=80, help="patches per side (image tokens = (grid/2)^2)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, inputs, n_image = build(args.grid, args.layers, args.device, torch.float32)
    runs = variants(model, inputs)
    for fn in runs.values():
        fn()  # warm-up
    best = best_times(runs, args.repeats, args.device)
    peaks = {name: tensor_peak_bytes(fn) for name, fn in runs.items()}
    print(
        f"Qwen2.5-VL random weights, {args.layers} layers, {inputs['input_ids'].shape[1]} tokens "
        f"({n_image} image), device={args.device}, fp32"
    )
    print(f"{'variant':<22}{'time (s)':>10}{'peak (MiB)':>12}{'time/(a)':>10}{'peak/(a)':>10}")
    labels = {"forward": "(a) forward", "grad": "(b) grad x input", "grad, no checkpoint": "(c) no checkpoint"}
    for name, label in labels.items():
        print(
            f"{label:<22}{best[name]:>10.3f}{peaks[name] / 2**20:>12.1f}"
            f"{best[name] / best['forward']:>10.2f}{peaks[name] / peaks['forward']:>10.2f}"
        )
    print(f"grad_peak/forward_peak={peaks['grad'] / peaks['forward']:.2f}")


if __name__ == "__main__":
    main()
