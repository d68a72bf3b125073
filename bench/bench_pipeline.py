"""What VEA costs over a plain answer, end to end, measured in one run.

A random-weight Qwen2.5-VL (default: 12 decoder layers of width 512, GQA, a 2-block
window-attention vision tower) answers about a 1120x1120 image (1,600 image tokens after
the 2x2 merge) on the CPU in float32. Every answer is forced to exactly ``--new-tokens``
tokens (``min_new_tokens`` = ``max_new_tokens``), so no variant wins by stopping early.
The model and its processor are built in memory with the project's tiny-model builder
(the offline tokenizer) and wrapped exactly as :func:`vea_engine.load_vlm` wraps a
checkpoint; all calls go through the public engine API. The five variants run once per
round, ``--repeats`` rounds, the order rotated from round to round. The ratios are taken
within each round (variants run back to back share the machine's state of the moment: a
shared 2-core machine drifts by tens of percent over a minute) and their median over the
rounds is reported; every run is printed too. Variants:

  base          ``answer(..., "qa")``: one prefill + decode
  vea           ``run_vea(methods=("vea",))``: attribution pass + mask + VEA answer
  compare       ``run_vea(methods=("base", "vea"))``: base and VEA answers; the attribution
                pass is the base answer's prefill; each answer decoded on its own (the default,
                as the reference code)
  compare_joint the same with ``joint_decode=True`` (opt-in): the two answers decoded as one
                batch after their own prefills
  attr_prefill  ``extract_attention``: one attribution pass alone (stops after the deepest
                layer it reads)

Then one instrumented run of each prints where the time goes: attribution forward
passes, answer prefills, decoding steps, the mask stages (evidence map + highlight),
image conversions and processor calls, and the rest.

The last line is ``vea/base=X compare/base=Y compare_joint/base=W floor=Z`` with
``floor = (base + attr_prefill) / base``: what VEA must cost at least (one attribution
pass more than a plain answer). Targets: ``vea/base <= 1.05 * floor`` and, for the
joint-decoding opt-in, ``compare_joint/base <= 2.05``.

Run: ``python bench/bench_pipeline.py [--repeats 16] [--threads 2]``
     ``python bench/bench_pipeline.py --device cuda --dtype bfloat16 --config tests/fixtures/real_configs/<dir>``
     (``--config``: the decoder and vision-tower sizes of a released checkpoint's
     config.json, random weights, the tiny tokenizer's vocabulary).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATCH = 28  # Qwen2.5-VL: 14-px patches, 2x2 merged -> one token per 28x28 pixels
MID_SIZE = {  # the default CPU model
    "hidden_size": 512,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 1408,
    "vision_hidden_size": 64,
    "vision_num_hidden_layers": 2,
    "vision_num_attention_heads": 2,
    "vision_intermediate_size": 128,
    "max_position_embeddings": 8192,
    "initializer_range": 0.02,
}
VARIANTS = ("base", "vea", "compare", "compare_joint", "attr_prefill")
PARTS = ("attribution forward", "answer prefill", "decode", "mask", "images+processor")


def sizes_from_config(folder: Path) -> tuple[str, dict]:
    """``(family, tiny-model overrides)`` with the decoder and vision sizes of a released config.json."""
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config") or config
    vision = config.get("vision_config") or {}
    family = config["model_type"]
    if family not in ("qwen2_vl", "qwen2_5_vl"):
        raise SystemExit(f"--config: {folder} is a {family!r} checkpoint; this benchmark builds Qwen2/2.5-VL only.")
    overrides = {
        "hidden_size": text["hidden_size"],
        "num_hidden_layers": text["num_hidden_layers"],
        "num_attention_heads": text["num_attention_heads"],
        "num_key_value_heads": text["num_key_value_heads"],
        "intermediate_size": text["intermediate_size"],
        "max_position_embeddings": 32768,
        "vision_hidden_size": vision.get("hidden_size", vision.get("embed_dim")),
        "vision_num_hidden_layers": vision["depth"],
        "vision_num_attention_heads": vision["num_heads"],
        "vision_intermediate_size": vision.get("intermediate_size", 4 * vision.get("embed_dim", 1280)),
        "initializer_range": 0.02,
    }
    return family, overrides


def build(family: str, overrides: dict, side: int, device: str, dtype: torch.dtype):
    """A random-weight VLM in memory, wrapped like :func:`vea_engine.load_vlm` wraps a checkpoint."""
    from transformers import AutoModelForImageTextToText

    from vea_engine.decoder import text_decoder_layers
    from vea_engine.families import get_adapter
    from vea_engine.loading import VLM, apply_resolution
    from vea_engine.testing.tiny_models import tiny_config, tiny_processor

    pixels = side * side
    spec = {**overrides, "min_pixels": PATCH * PATCH, "max_pixels": pixels}
    config, processor = tiny_config(family, **spec), tiny_processor(family, **spec)
    config.vision_config.out_hidden_size = config.get_text_config().hidden_size
    torch.manual_seed(0)
    with torch.device(device):  # built and randomly initialised on the target device (fast at any size)
        model = AutoModelForImageTextToText.from_config(config, attn_implementation="sdpa", dtype=dtype)
    model.eval()
    processor.tokenizer.padding_side = "left"
    apply_resolution(processor, family, pixels, model.config)
    vlm = VLM(model, processor, get_adapter(processor, model.config), f"bench-{family}", family,
              len(text_decoder_layers(model)))  # fmt: skip
    return vlm


class Breakdown:
    """Wall time per part of the pipeline, from hooks on the model and wrappers on the engine's helpers."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def timing(self, vlm):
        import vea_engine.answering as answering
        import vea_engine.methods as methods

        started: list[tuple[float, str]] = []

        def before(module, args, kwargs):
            ids = kwargs.get("input_ids")
            n = ids.shape[-1] if ids is not None else kwargs["inputs_embeds"].shape[1]
            part = (
                "attribution forward" if kwargs.get("use_cache") is False else "answer prefill" if n > 1 else "decode"
            )
            started.append((time.perf_counter(), part))

        def after(module, args, kwargs, output):
            begin, part = started.pop()
            self.seconds[part] += time.perf_counter() - begin

        def timed(part, fn):
            def wrapper(*args, **kwargs):
                begin = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.seconds[part] += time.perf_counter() - begin

            return wrapper

        patches = [
            (methods, "evidence_map", "mask"),
            (methods, "highlight_uint8", "mask"),
            (methods, "to_levels", "images+processor"),
            (methods, "images_to_uint8", "images+processor"),
            (answering, "images_to_uint8", "images+processor"),
            (vlm.adapter, "encode", "images+processor"),
            (vlm.adapter, "render", "images+processor"),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        for owner, name, part in patches:
            setattr(owner, name, timed(part, getattr(owner, name)))
        handles = [
            vlm.model.register_forward_pre_hook(before, with_kwargs=True),
            vlm.model.register_forward_hook(after, with_kwargs=True, always_call=True),
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for owner, name, value in saved:
                if owner is vlm.adapter:
                    delattr(owner, name)
                else:
                    setattr(owner, name, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=16, help="rounds (each runs the five variants once)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--config", type=Path, default=None, help="a released config folder (real sizes)")
    parser.add_argument("--image-tokens", type=int, default=1600, help="a square number (40 x 40 = 1600)")
    parser.add_argument("--new-tokens", type=int, default=50)
    parser.add_argument("--layers", default=None, help="attribution layers, e.g. '6,7,8'; default: the engine's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from vea_engine import answer, extract_attention, run_vea
    from vea_engine.layers import for_model, parse_layer_list

    grid = int(round(args.image_tokens**0.5))
    if grid * grid != args.image_tokens:
        raise SystemExit(f"--image-tokens {args.image_tokens} is not a square number; e.g. 1600 (40 x 40).")
    family, overrides = ("qwen2_5_vl", MID_SIZE) if args.config is None else sizes_from_config(args.config)
    side = grid * PATCH
    vlm = build(family, overrides, side, args.device, getattr(torch, args.dtype))
    vlm.model.generation_config.min_new_tokens = args.new_tokens  # every answer exactly --new-tokens long
    rng = np.random.default_rng(0)
    image = (rng.random((side, side, 3)) * 255).astype(np.uint8)
    question = "What is the total amount on the receipt?"
    selection = for_model(parse_layer_list(args.layers) if args.layers else None, vlm.layer_kinds, vlm.name)
    n = args.new_tokens

    calls = {
        "base": lambda: answer(vlm, [image], question, "qa", max_new_tokens=n),
        "vea": lambda: run_vea(vlm, [image], question, selection, max_new_tokens=n, methods=("vea",)),
        "compare": lambda: run_vea(vlm, [image], question, selection, max_new_tokens=n, methods=("base", "vea")),
        "compare_joint": lambda: run_vea(
            vlm, [image], question, selection, max_new_tokens=n, methods=("base", "vea"), joint_decode=True
        ),
        "attr_prefill": lambda: extract_attention(vlm, [image], question, selection),
    }
    calls["attr_prefill"]()  # warm-up (allocator, kernels)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.repeats):
        turn = round_ % len(VARIANTS)
        for name in VARIANTS[turn:] + VARIANTS[:turn]:  # rotated: no variant always runs first
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            begin = time.perf_counter()
            calls[name]()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - begin)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratios = {  # per round
        "vea": [v / b for v, b in zip(times["vea"], times["base"], strict=True)],
        "compare": [c / b for c, b in zip(times["compare"], times["base"], strict=True)],
        "compare_joint": [c / b for c, b in zip(times["compare_joint"], times["base"], strict=True)],
        "floor": [(b + a) / b for b, a in zip(times["base"], times["attr_prefill"], strict=True)],
    }

    from PIL import Image

    from vea_engine.config import build_prompt

    prompt_tokens = {
        style: vlm.adapter.encode([Image.fromarray(image)], [build_prompt(question, style)])["input_ids"].shape[-1]
        for style in ("qa", "vea")
    }
    print(
        f"bench_pipeline: {family}, {vlm.num_layers} decoder layers of width {overrides['hidden_size']}, "
        f"{args.image_tokens} image tokens (prompts of {prompt_tokens['qa']} tokens with qa, {prompt_tokens['vea']} with "
        f"vea), {args.dtype} on {args.device}, "
        f"{torch.get_num_threads()} threads, {n} new tokens per answer, layers {selection.source} "
        f"{list(selection.layers)}, {args.repeats} rounds"
    )
    print(f"  {'':<13} {'median s':>8}   runs (s)")
    for name in VARIANTS:
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"  {name:<13} {median[name]:8.3f}   {runs}")
    for name, values in ratios.items():
        label = "floor" if name == "floor" else f"{name}/base"
        print(f"  {label:<13} {statistics.median(values):8.3f}   per round: " + ", ".join(f"{r:.3f}" for r in values))
    print("breakdown of one run each (s):")
    print("  " + " " * 13 + "".join(f"{part:>21}" for part in (*PARTS, "rest", "total")))
    for name in VARIANTS:
        breakdown = Breakdown()
        with breakdown.timing(vlm):
            begin = time.perf_counter()
            calls[name]()
            total = time.perf_counter() - begin
        parts = [breakdown.seconds[part] for part in PARTS]
        print(f"  {name:<13}" + "".join(f"{t:21.3f}" for t in (*parts, total - sum(parts), total)))
    vea, compare, joint, floor = (statistics.median(ratios[n]) for n in ("vea", "compare", "compare_joint", "floor"))
    met = {True: "met", False: "NOT met"}
    print(
        f"targets: vea/base <= 1.05 x floor = {1.05 * floor:.3f} ({met[vea <= 1.05 * floor]}); "
        f"compare_joint/base <= 2.05 ({met[joint <= 2.05]})"
    )
    print(f"vea/base={vea:.3f} compare/base={compare:.3f} compare_joint/base={joint:.3f} floor={floor:.3f}")


if __name__ == "__main__":
    main()
