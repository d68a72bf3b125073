"""Command line: ``python -m vea_engine {run,demo,profile,eval,make-tiny-models} ...``.

``run`` answers one question about one image with and without VEA and writes
the highlighted image and the heat map; ``demo`` does the same on a tiny
random-weight model and a synthetic picture when no real model is at hand.
``profile`` selects a model's evidence layers from a manifest with boxes
(paper step 1); ``eval`` answers a manifest with VEA, the baselines and the
ablations, resumably, and prints the score table. ``eval`` runs data-parallel
under ``accelerate launch -m vea_engine eval ...`` (or ``torchrun``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .config import DEFAULTS, RESOLUTION_MODES, ROUNDING_MODES
from .demo import RANDOM_WEIGHTS_WARNING, build_demo_models
from .labels import LABEL_RULES
from .layers import LAYER_MODES
from .loading import ATTN_IMPLEMENTATIONS, DTYPES, QUANTIZATIONS
from .methods import METHODS

log = logging.getLogger("vea_engine")


RESOLUTION_HELP = (
    f"{' | '.join(RESOLUTION_MODES)} | a pixel count: input resolution of processors with a pixel budget "
    "(Qwen-VL); paper (default) caps them at 512*512 as the reference code does"
)
ROUNDING_HELP = "how canvases and highlighted images become 8-bit: truncate (the reference, default) or round"


def _add_vea_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layers",
        default=None,
        help=f"a layer list like '14,15,17' or a mode: {', '.join(LAYER_MODES[:-1])} (default preset)",
    )
    parser.add_argument("--lam", type=float, default=DEFAULTS.lam, help="denoise threshold (paper: 10)")
    parser.add_argument("--sigma", type=float, default=DEFAULTS.sigma, help="smoothing; <=1 relative, >1 px, 0 off")
    parser.add_argument("--alpha", type=float, default=DEFAULTS.alpha, help="brightness of non-evidence (paper: 0.5)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULTS.max_new_tokens)
    _add_model_options(parser)
    parser.add_argument("--rounding", default="truncate", choices=ROUNDING_MODES, help=ROUNDING_HELP)
    parser.add_argument("--delegate", default=None, help="a second model that makes the mask for --model")
    parser.add_argument("--out", default="outputs", help="folder for highlighted.png and heatmap.png")
    decoding = parser.add_mutually_exclusive_group()
    decoding.add_argument(
        "--joint-decode",
        action="store_true",
        help="decode the base and VEA answers as one batch after their own prefills (faster; in half precision "
        "a near tie between two tokens can break the other way)",
    )
    decoding.add_argument(
        "--separate-answers",
        action="store_true",
        help="decode each answer on its own, exactly as a plain answer and the reference code (the default)",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="auto", choices=list(DTYPES))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, or auto (spread one model over devices)")
    parser.add_argument(
        "--attn",
        default=ATTN_IMPLEMENTATIONS[0],
        choices=ATTN_IMPLEMENTATIONS,
        help="attention kernel (capture works on all): auto = eager at the paper resolution (bit-exact), else sdpa",
    )
    parser.add_argument("--resolution", default="paper", help=RESOLUTION_HELP)
    parser.add_argument(
        "--max-memory",
        default=None,
        help="memory budget per device, e.g. 'cuda:0=8GiB,cpu=32GiB': spreads the model over GPU, CPU and disk "
        "(layers beyond the budgets are read from disk as they run; slower, but large models fit)",
    )
    parser.add_argument(
        "--offload-folder", default=None, help="folder for weights kept on disk (safetensors checkpoints need none)"
    )
    parser.add_argument(
        "--quantization",
        default=QUANTIZATIONS[0],
        choices=QUANTIZATIONS,
        help="8bit / 4bit weights through bitsandbytes (needs `pip install bitsandbytes` and a CUDA GPU)",
    )


def _load_options(args: argparse.Namespace, device=None) -> dict:
    """``load_vlm`` keywords from the model options (``device`` overrides ``--device``)."""
    return {
        "dtype": args.dtype,
        "device": device if device is not None else args.device,
        "attn_implementation": args.attn,
        "resolution": args.resolution,
        "max_memory": args.max_memory,
        "offload_folder": args.offload_folder,
        "quantization": args.quantization,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vea_engine", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="answer a question about an image, with and without VEA")
    run.add_argument("--model", required=True, help="checkpoint folder or hub id")
    run.add_argument("--image", required=True, help="image file")
    run.add_argument("--question", required=True)
    _add_vea_options(run)
    demo = sub.add_parser("demo", help="run VEA on a tiny random-weight model and a synthetic image (offline)")
    demo.add_argument("--family", default="qwen2_5_vl", help="tiny model family to build")
    demo.add_argument("--models-dir", default=".cache/tiny-models", help="where tiny checkpoints are built")
    _add_vea_options(demo)
    profile = sub.add_parser("profile", help="rank decoder layers by evidence localisation (paper step 1)")
    profile.add_argument("--model", required=True, help="checkpoint folder or hub id")
    profile.add_argument("--data", required=True, help="JSONL manifest with evidence boxes")
    profile.add_argument("--rule", default="any", choices=LABEL_RULES, help="token evidence label rule")
    profile.add_argument(
        "--top-fraction",
        type=float,
        default=DEFAULTS.top_layer_fraction,
        help="fraction of layers kept (paper: 0.10, at least one)",
    )
    profile.add_argument("--out", default="profile.json", help="profile JSON to write")
    profile.add_argument("--plot", default=None, help="also draw the per-layer scores to this PNG")
    profile.add_argument("--limit", type=int, default=None, help="use the first N good rows only")
    _add_model_options(profile)
    ev = sub.add_parser("eval", help="evaluate VEA, baselines and ablations on a manifest (resumable)")
    ev.add_argument("--model", required=True, help="checkpoint folder or hub id")
    ev.add_argument("--data", required=True, help="JSONL manifest")
    ev.add_argument(
        "--methods",
        default="base,inst,vea",
        help="comma list of " + ", ".join(METHODS),
    )
    ev.add_argument("--out", default="preds.jsonl", help="predictions JSONL (appended to; resumes)")
    choice = ev.add_mutually_exclusive_group()
    choice.add_argument(
        "--layers",
        default=None,
        help=f"a layer list like '14,15,17' or a mode: {', '.join(LAYER_MODES[:-1])} (default preset)",
    )
    choice.add_argument("--profile", default=None, help="a profile.json from 'profile': use its layers")
    ev.add_argument("--limit", type=int, default=None, help="evaluate the first N good rows only")
    ev.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="samples answered together (same-size images with the same pending methods); 1: each alone, exactly",
    )
    ev.add_argument("--lam", type=float, default=DEFAULTS.lam, help="denoise threshold (paper: 10)")
    ev.add_argument("--sigma", type=float, default=DEFAULTS.sigma, help="smoothing; <=1 relative, >1 px, 0 off")
    ev.add_argument("--alpha", type=float, default=DEFAULTS.alpha, help="brightness of non-evidence (paper: 0.5)")
    ev.add_argument("--max-new-tokens", type=int, default=DEFAULTS.max_new_tokens)
    ev.add_argument("--rounding", default="truncate", choices=ROUNDING_MODES, help=ROUNDING_HELP)
    _add_model_options(ev)
    tiny = sub.add_parser("make-tiny-models", help="build tiny random-weight checkpoints for tests and demos")
    tiny.add_argument("out", help="folder to build into")
    return parser


def _layers_arg(text: str | None):
    if text is None or text in ("preset", "all", "deepest_half"):
        return text
    from .layers import parse_layer_list

    return parse_layer_list(text)


def _settings(args: argparse.Namespace) -> dict:
    """The method's hyper-parameters from the command line (run, demo and eval share them)."""
    names = ("lam", "sigma", "alpha", "max_new_tokens", "rounding")
    return {name: getattr(args, name) for name in names}


def run_command(args: argparse.Namespace, model: str, image, question: str) -> dict:
    """Load, run VEA, write images; returns the JSON-able summary."""
    from .config import build_prompt
    from .images import tensor_to_pil, to_rgb_uint8
    from .loading import load_vlm
    from .mask import heatmap
    from .pipeline import run_vea

    image = to_rgb_uint8(image, "--image")  # cheap checks before loading a model
    build_prompt(question)
    load = _load_options(args)
    vlm = load_vlm(model, **load)
    delegate = None
    if args.delegate:  # its own kernel choice; its own disk folder (weight files are named by parameter)
        folder = str(Path(args.offload_folder) / "delegate") if args.offload_folder else None
        delegate = load_vlm(args.delegate, **{**load, "attn_implementation": "auto", "offload_folder": folder})
    result = run_vea(
        vlm,
        [image],
        question,
        layers=_layers_arg(args.layers),
        delegate=delegate,
        joint_decode=args.joint_decode,
        **_settings(args),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    highlighted, heat = out / "highlighted.png", out / "heatmap.png"
    tensor_to_pil(result.highlighted[0]).save(highlighted)
    tensor_to_pil(heatmap(result.evidence)[0]).save(heat)
    return {
        "model": vlm.name,
        "mask_model": (delegate or vlm).name,
        "question": question,
        "base": result.answers["base"][0],
        "vea": result.answers["vea"][0],
        "layers": list(result.layers.layers),
        "layer_source": result.layers.source,
        "highlighted": str(highlighted),
        "heatmap": str(heat),
    }


def profile_command(args: argparse.Namespace) -> dict:
    """Profile a model's layers on a manifest; writes the JSON (and plot); returns a summary."""
    from .data import load_good_samples
    from .loading import load_vlm
    from .profile_plot import plot_profile
    from .profiling import profile_layers

    samples = load_good_samples(args.data, args.limit, require_boxes=True)
    vlm = load_vlm(args.model, **_load_options(args))
    profile = profile_layers(
        vlm,
        samples,
        rule=args.rule,
        top_fraction=args.top_fraction,
        progress=lambda done, total: log.debug("profile: %d/%d samples", done, total),
    )
    out = profile.to_json(args.out)
    summary = {
        "model": vlm.name,
        "layers": list(profile.layers),
        "auroc_selected": [round(profile.auroc[layer], 4) for layer in profile.layers],
        "n_samples": profile.n_samples,
        "n_skipped": profile.n_skipped,
        "profile": str(out),
    }
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_profile(profile).save(args.plot)
        summary["plot"] = str(args.plot)
    return summary


def eval_command(args: argparse.Namespace) -> str | None:
    """Evaluate a manifest (this rank's shard); returns the summary table on rank 0, else None."""
    from .data import load_good_samples
    from .distributed import dist_context
    from .evaluation import check_methods, evaluate
    from .loading import load_vlm
    from .summary import summarize

    methods = check_methods(args.methods)  # fail before loading anything
    layers = _layers_arg(args.layers)
    if args.profile:
        from .profiling import LayerProfile

        layers = LayerProfile.from_json(args.profile).selection()
    samples = load_good_samples(args.data, args.limit, require_boxes=False)
    context = dist_context()
    device = args.device
    if context.world > 1:
        if str(device) == "auto":
            raise ValueError(
                "--device auto spreads ONE model over all GPUs, but accelerate launch runs one model per rank; "
                "drop --device (each rank uses its own device) or run a single process with --device auto."
            )
        device = device or context.device
    vlm = load_vlm(args.model, **_load_options(args, device))
    out = evaluate(
        vlm,
        samples,
        methods,
        args.out,
        layers=layers,
        context=context,
        **_settings(args),
        batch_size=args.batch_size,
        progress=lambda done, total: log.debug("eval: %d/%d", done, total),
    )
    return str(summarize(out)) if context.rank == 0 else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "make-tiny-models":
            paths = build_demo_models(args.out)
            print(json.dumps({family: str(path) for family, path in paths.items()}, indent=2))
        elif args.command == "run":
            print(json.dumps(run_command(args, args.model, args.image, args.question), indent=2))
        elif args.command == "demo":
            from .synthetic import make_sample

            paths = build_demo_models(args.models_dir, families=(args.family,))
            sample = make_sample(seed=0)
            log.warning(RANDOM_WEIGHTS_WARNING)
            summary = run_command(args, str(paths[args.family]), sample.image, sample.question)
            summary["reference_answers"] = sample.answers
            summary["warning"] = RANDOM_WEIGHTS_WARNING
            print(json.dumps(summary, indent=2))
        elif args.command == "profile":
            print(json.dumps(profile_command(args), indent=2))
        elif args.command == "eval":
            table = eval_command(args)
            if table is not None:
                print(table)
    except ValueError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
