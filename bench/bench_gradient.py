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

import torch
from bench_capture import measure, parse_arguments, print_table

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
    args = parse_arguments(__doc__, repeats=2)
    inputs, n_image, best, peaks = measure(args, variants)
    print(
        f"Qwen2.5-VL random weights, {args.layers} layers, {inputs['input_ids'].shape[1]} tokens "
        f"({n_image} image), device={args.device}, fp32"
    )
    labels = {"forward": "(a) forward", "grad": "(b) grad x input", "grad, no checkpoint": "(c) no checkpoint"}
    print_table(labels, best, peaks, "forward")
    print(f"grad_peak/forward_peak={peaks['grad'] / peaks['forward']:.2f}")


if __name__ == "__main__":
    main()
