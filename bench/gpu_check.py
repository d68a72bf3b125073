"""The prepared GPU check: real-size models, the attention kernels, the pipeline and ComfyUI on one GPU.

Run through ``bash bench/gpu_check.sh`` (which picks the Python and caps the run at
8 minutes). Steps, each printed as it finishes:

1. **env**: Python, torch, CUDA, GPU name and memory, transformers, accelerate.
2. **build**: real-size random-weight Qwen2.5-VL-7B and Gemma-3-4B in bfloat16 from the
   configs transcribed in ``tests/fixtures/real_configs/``: built on the meta device
   (no memory), materialised on the GPU (``to_empty``) and initialised there with
   transformers' own initialiser (normal weights, unit norms, rotary tables), so no
   15 GB pass over the CPU. Prints parameters, decoder depth and the weights' bytes.
3. **kernels**: one prefill of ``N`` image-token positions (+ a 32-token prompt) at
   N = 1k / 4k / 8k, for each model: ``sdpa`` (a plain forward), ``capture`` (SDPA +
   the engine's capture of the preset layers' last-token rows, stopping after the
   deepest: the attribution pass) and ``eager`` (eager attention with
   ``output_attentions=True``: the reference code's way). Time (best of 2 after a
   warm-up) and ``torch.cuda.max_memory_allocated`` above the weights; ``OOM`` where
   eager does not fit. The decoder alone runs here (random embeddings of the image
   positions); the vision tower is part of step 4. The image-token counts are those
   the real processors give: Qwen2.5-VL at 896x896, 1792x1792 and 3584x1792 pixels;
   Gemma 3 at 256 tokens per crop (4, 16, 32 crops).
4. **pipeline**: ``bench/bench_pipeline.py --device cuda --dtype bfloat16 --config
   <Qwen2.5-VL-7B>``: its last line, ``vea/base=X compare/base=Y compare_joint/base=W floor=Z``.
5. **comfyui**: the real ComfyUI server on the GPU (``--disable-smart-memory``, so a
   model is offloaded as soon as another one loads), with tiny random-weight
   checkpoints built on the spot: ``vea_compare`` twice on Qwen2.5-VL, then a LLaVA
   branch in the same graph (Qwen2.5-VL is offloaded to the CPU), then both again
   (Qwen2.5-VL comes back): its answers must equal the first run's.

Between 3 and 4, when time allows, **offload**: the random Qwen2.5-VL-7B is saved and
loaded again with ``max_memory="cuda:0=8GiB,cpu=48GiB"`` (accelerate keeps the other
layers on the CPU and moves them in per layer, as ``load_vlm(max_memory=...)`` does):
GPU memory of that model (weights + one 1k-token prefill), time, and the captured rows
of the preset layers against the whole model's (same weights, same inputs).

``--dry-run`` (CPU, < 60 s): configs parsed, models built on the meta device only
(shapes, depth, parameter counts), image-token counts from the real image processor,
the kernel plan, and the commands of steps 4 and 5, without running them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "fixtures" / "real_configs"
#: name -> (config folder, hub name the layer presets know)
MODELS = {
    "Qwen2.5-VL-7B": ("Qwen__Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
    "Gemma-3-4B": ("google__gemma-3-4b-it", "google/gemma-3-4b-it"),
}
IMAGE_TOKENS = (1024, 4096, 8192)
#: Qwen2.5-VL image sizes (W, H) in pixels giving those token counts (28x28 px per token)
QWEN_SIZES = {1024: (896, 896), 4096: (1792, 1792), 8192: (3584, 1792)}
PROMPT_TOKENS = 32
BUDGET_S = 450.0  # the shell script kills the run at 480 s
COMFY_MODELS = ("qwen2_5_vl", "llava")


def say(text: str = "") -> None:
    print(text, flush=True)


class Clock:
    """Seconds since start, and whether ``need`` seconds are still left of the budget."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.monotonic(), budget

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self, need: float) -> bool:
        return self.elapsed() + need <= self.budget


# ----------------------------------------------------------------------------- 1. env


def report_env(dry_run: bool) -> str:
    import accelerate
    import transformers

    say("== env")
    say(f"python {platform.python_version()} at {sys.executable}")
    say(f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        say(f"GPU: {props.name}, {props.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}")
        return "cuda"
    if not dry_run:
        raise SystemExit("gpu_check: torch sees no CUDA GPU; run with --dry-run to check the plumbing on the CPU.")
    say("GPU: none (dry run: meta-device shapes only)")
    return "meta"


# ----------------------------------------------------------------------------- 2. build


def build_model(config_dir: Path, device: str, dtype: torch.dtype = torch.bfloat16):
    """A random-weight model of a real config: built on meta, materialised and initialised on ``device``
    (``meta``: shapes only)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(config_dir, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation="sdpa")
    if device != "meta":
        model.to_empty(device=device)
        for module in model.modules():  # from_config marked the meta tensors initialised
            module._is_hf_initialized = False
            for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
                if hasattr(tensor, "_is_hf_initialized"):
                    tensor._is_hf_initialized = False
        model.initialize_weights()
        bad = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if not t.isfinite().all()]
        if bad:
            raise RuntimeError(f"gpu_check: tensors not initialised after to_empty: {bad[:5]}")
    return model.eval()


def describe_model(name: str, model) -> None:
    from vea_engine.decoder import text_decoder_layers

    params = sum(p.numel() for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    layers = len(text_decoder_layers(model))
    text = model.config.get_text_config()
    say(
        f"{name}: {params / 1e9:.2f} B parameters, {size / 2**30:.1f} GiB in {next(model.parameters()).dtype}, "
        f"{layers} decoder layers, hidden {text.hidden_size}, heads {text.num_attention_heads}/"
        f"{text.num_key_value_heads} (q/kv)"
    )


def image_token_plan(name: str, config_dir: Path, model) -> dict[int, str]:
    """How the real processors reach each token count (checked with the real image processor for Qwen)."""
    plan = {}
    if name.startswith("Qwen"):
        from PIL import Image
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(config_dir, local_files_only=True)
        merge = processor.merge_size**2
        for tokens, (width, height) in QWEN_SIZES.items():
            grid = processor(images=[Image.new("RGB", (width, height))], return_tensors="pt")["image_grid_thw"]
            got = int(grid.prod()) // merge
            if got != tokens:
                raise RuntimeError(f"gpu_check: {width}x{height} gives {got} Qwen2.5-VL image tokens, not {tokens}")
            plan[tokens] = f"{width}x{height} px -> grid {tuple(grid[0].tolist())} -> {got} tokens"
    else:
        per_crop = int(model.config.mm_tokens_per_image)
        for tokens in IMAGE_TOKENS:
            plan[tokens] = f"{tokens // per_crop} crops x {per_crop} tokens"
    for tokens, text in plan.items():
        say(f"  {tokens:>5} image tokens: {text}")
    return plan


# ----------------------------------------------------------------------------- 3. kernels


def _prompt(model, tokens: int, device: str) -> torch.Tensor:
    """``[1, tokens + PROMPT_TOKENS]`` ordinary text ids standing in for image positions and a prompt."""
    generator = torch.Generator().manual_seed(tokens)
    high = min(20000, model.get_input_embeddings().num_embeddings // 2)  # below every special token id
    ids = torch.randint(high // 2, high, (1, tokens + PROMPT_TOKENS), generator=generator)
    return ids.to(device)


def _time(run, device: str, repeats: int = 2) -> tuple[float, int]:
    """Best time of ``repeats`` runs after a warm-up, and the peak allocated bytes of one run."""
    run()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best, torch.cuda.max_memory_allocated(device) - base


def kernel_table(name: str, hub_name: str, model, device: str, clock: Clock, dry_run: bool) -> list[str]:
    """Rows ``model | tokens | variant | seconds | extra GiB`` for sdpa, capture and eager."""
    from vea_engine.capture import StopForward, capture_attention_rows
    from vea_engine.decoder import layer_kinds
    from vea_engine.layers import select_layers

    layers = select_layers("preset", layer_kinds(model), hub_name).layers
    say(f"{name}: capture reads layers {list(layers)} (the paper's preset), stopping after layer {max(layers)}")
    rows = []
    for tokens in IMAGE_TOKENS:
        if dry_run:
            say(f"  would run N={tokens}: input_ids [1, {tokens + PROMPT_TOKENS}] through sdpa, capture, eager")
            continue
        ids = _prompt(model, tokens, device)

        def sdpa(ids=ids):
            model(input_ids=ids, use_cache=False, logits_to_keep=1)

        def capture(ids=ids):
            with capture_attention_rows(model, layers, (-1,), stop_after_last=True) as recorder:
                try:
                    model(input_ids=ids, use_cache=False, logits_to_keep=1)
                except StopForward:
                    pass
            recorder.stacked()

        def eager(ids=ids):
            out = model(input_ids=ids, use_cache=False, logits_to_keep=1, output_attentions=True)
            del out

        for variant, run in (("sdpa", sdpa), ("capture", capture), ("eager", eager)):
            if not clock.left(30):
                rows.append(f"| {name} | {tokens} | {variant} | skipped (time budget) | |")
                continue
            model.set_attn_implementation("eager" if variant == "eager" else "sdpa")
            try:
                with torch.inference_mode():
                    seconds, peak = _time(run, device)
                rows.append(f"| {name} | {tokens} | {variant} | {seconds:.3f} | {peak / 2**30:.2f} |")
            except torch.OutOfMemoryError:
                rows.append(f"| {name} | {tokens} | {variant} | does not fit (OOM) | > free |")
            finally:
                model.set_attn_implementation("sdpa")
                torch.cuda.empty_cache()  # a benchmark: give the next variant a clean pool
            say(rows[-1])
    return rows


# ----------------------------------------------------------------------------- offload

OFFLOAD_BUDGET = "cuda:0=8GiB,cpu=48GiB"


def _preset_rows(model, layers, ids) -> torch.Tensor:
    """``[L, 1, K]`` float32 CPU: the captured last-token rows of ``layers`` in one prefill (no early exit)."""
    from vea_engine.capture import capture_attention_rows

    with torch.inference_mode(), capture_attention_rows(model, layers, (-1,)) as recorder:
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
    return recorder.stacked()[:, :, -1].float().cpu()


def run_offload(name: str, hub_name: str, model, device: str, clock: Clock, dry_run: bool) -> str:
    """Save ``model``, load it again within :data:`OFFLOAD_BUDGET` and compare captured rows and memory."""
    from transformers import AutoModelForImageTextToText

    from vea_engine.decoder import layer_kinds
    from vea_engine.layers import select_layers
    from vea_engine.loading import describe_placement, dispatch_map, parse_max_memory

    say(f"== offload ({name} within max_memory={OFFLOAD_BUDGET!r})")
    budget = parse_max_memory(OFFLOAD_BUDGET)
    if dry_run:
        say(f"  would save the random {name}, reload it with max_memory={budget} and compare rows at N=1024")
        return "dry run"
    if not clock.left(300):  # about a minute for itself, the rest for the pipeline and ComfyUI
        say("skipped: not enough of the time budget left")
        return "skipped (time budget)"
    layers = select_layers("preset", layer_kinds(model), hub_name).layers
    ids = _prompt(model, 1024, device)
    whole = _preset_rows(model, layers, ids)
    work = Path(tempfile.mkdtemp(prefix="vea-offload-"))
    try:
        started = time.monotonic()
        model.save_pretrained(work, max_shard_size="4GB")
        say(f"  saved in {time.monotonic() - started:.1f} s")
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        started = time.monotonic()
        spread = AutoModelForImageTextToText.from_pretrained(
            work, dtype=model.dtype, attn_implementation="sdpa", device_map="auto", max_memory=budget
        ).eval()
        say(
            f"  loaded in {time.monotonic() - started:.1f} s: {describe_placement(dispatch_map(spread) or {'': 'one device'})}"
        )
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        rows = _preset_rows(spread, layers, ids)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = (torch.cuda.max_memory_allocated() - before) / 2**30
        diff = (rows - whole).abs().max().item()
        say(f"  one 1k-token prefill: {seconds:.2f} s, GPU memory of the spread model {peak:.2f} GiB")
        say(f"  captured rows vs the whole model: max |diff| = {diff:.2e}")
        del spread
        return f"{peak:.2f} GiB on the GPU, prefill {seconds:.2f} s, rows max |diff| {diff:.1e}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- 4. pipeline


def pipeline_command(config_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO / "bench" / "bench_pipeline.py"),
        "--device",
        "cuda",
        "--dtype",
        "bfloat16",
        "--config",
        str(config_dir),
        "--repeats",
        "1",
    ]


def run_pipeline(clock: Clock, dry_run: bool) -> str:
    say("== pipeline (vea/base, compare/base, compare_joint/base)")
    script = REPO / "bench" / "bench_pipeline.py"
    command = pipeline_command(FIXTURES / MODELS["Qwen2.5-VL-7B"][0])
    if not script.is_file():
        say(f"skipped: {script.relative_to(REPO)} is not in this checkout")
        return "skipped (no bench/bench_pipeline.py)"
    say("$ " + " ".join(command))
    if dry_run:
        return "dry run"
    if not clock.left(60):
        say("skipped: not enough of the time budget left")
        return "skipped (time budget)"
    timeout = max(30.0, clock.budget - clock.elapsed() - 120)  # keep two minutes for ComfyUI
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        say(f"failed: bench_pipeline.py ran past {timeout:.0f} s")
        return "timed out"
    lines = (done.stdout or "").strip().splitlines()
    for line in lines[-12:]:
        say("  " + line)
    if done.returncode != 0 or not lines:
        say(f"failed (exit {done.returncode}): {(done.stderr or '')[-1500:]}")
        return f"failed (exit {done.returncode})"
    return lines[-1]


# ----------------------------------------------------------------------------- 5. ComfyUI


def compare_prompts() -> list[tuple[str, dict]]:
    """The four prompts of the round trip: (what it shows, API prompt)."""
    base = json.loads((REPO / "workflows" / "api" / "vea_compare.json").read_text())
    for node, kind in (("1", "PrimitiveStringMultiline"), ("2", "VEALoadVLM"), ("4", "VEAAllInOne")):
        if base.get(node, {}).get("class_type") != kind:
            raise RuntimeError(f"gpu_check: workflows/api/vea_compare.json node {node} is not {kind}; update the check")
    base["2"]["inputs"]["attention"] = "sdpa"
    first = copy.deepcopy(base)
    second = copy.deepcopy(base)
    second["1"]["inputs"]["value"] = "What is the total?"
    both = copy.deepcopy(second)
    both["12"] = {**copy.deepcopy(base["2"]), "_meta": {"title": "second model"}}
    both["12"]["inputs"]["checkpoint"] = "llava-1.5-7b-hf"
    both["14"] = copy.deepcopy(base["4"])
    both["14"]["inputs"]["model"] = ["12", 0]
    both["15"] = {"class_type": "PreviewAny", "inputs": {"source": ["14", 0]}}
    again = copy.deepcopy(both)
    again["1"]["inputs"]["value"] = base["1"]["inputs"]["value"]
    return [
        ("vea_compare on Qwen2.5-VL (loads it on the GPU)", first),
        ("vea_compare again, another question (the loaded model)", second),
        ("a LLaVA branch loads a second model (Qwen2.5-VL goes to the CPU)", both),
        ("both again, first question (Qwen2.5-VL comes back)", again),
    ]


def _gpu_python(folder: Path) -> Path:
    """An interpreter wrapper that drops ``--cpu`` (the harness starts ComfyUI CPU-only, as CI needs)."""
    wrapper = folder / "python-gpu"
    wrapper.write_text(
        f'#!/bin/sh\nfor arg do shift; [ "$arg" = --cpu ] || set -- "$@" "$arg"; done\nexec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def missing_requirements(comfy_dir: Path) -> list[str]:
    """ComfyUI's requirements (its requirements.txt) that this Python has not installed."""
    from importlib import metadata

    path = comfy_dir / "requirements.txt"
    if not path.is_file():
        return []
    missing = []
    for line in path.read_text().splitlines():
        name = re.split(r"[<>=!~;\[\s]", line.strip(), maxsplit=1)[0]
        if not name or name.startswith("#"):
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _texts(entry: dict, node: str) -> list[str]:
    ui = entry.get("outputs", {}).get(node, {})
    return [str(text) for text in ui.get("text", [])]


def run_comfy(clock: Clock, dry_run: bool) -> str:
    say("== comfyui (ModelPatcher round trip on the GPU)")
    from tests.comfy_harness import comfyui_dir

    prompts = compare_prompts()
    main = comfyui_dir() / "main.py"
    for what, prompt in prompts:
        say(f"  prompt: {what}: nodes {sorted(prompt, key=int)}")
    if not main.is_file():
        say(
            f"skipped: no ComfyUI at {main.parent} (run scripts/install_comfyui.sh, or carry .cache/comfyui "
            "and set COMFYUI_DIR)"
        )
        return "skipped (no ComfyUI)"
    say(f"  server: {main} --listen 127.0.0.1 --disable-smart-memory --verbose DEBUG (GPU: no --cpu)")
    missing = missing_requirements(main.parent)
    if missing:  # the server may still start: some are optional (kornia, spandrel...)
        say(f"  ComfyUI requirements this Python lacks: {', '.join(missing)} (carry them as wheels if it fails)")
    if dry_run:
        return "dry run"
    if not clock.left(90):
        say("skipped: not enough of the time budget left")
        return "skipped (time budget)"
    from tests.comfy_harness import ComfyServer
    from vea_engine.testing.tiny_models import build_tiny_models

    work = Path(tempfile.mkdtemp(prefix="vea-gpu-check-"))
    try:
        dirs = build_tiny_models(work / "models", families=COMFY_MODELS)
        models = {"VLM/Qwen2.5-VL-7B-Instruct": dirs["qwen2_5_vl"], "VLM/llava-1.5-7b-hf": dirs["llava"]}
        say("  checkpoints: tiny random-weight Qwen2.5-VL and LLaVA-1.5 (built here; real-size ones take minutes)")
        server = ComfyServer(
            models=models,
            python=_gpu_python(work) if torch.cuda.is_available() else sys.executable,
            extra_args=["--disable-smart-memory", "--verbose", "DEBUG"],
            log_path=work / "comfyui.log",
        )
        try:
            server.start()
        except Exception as error:  # noqa: BLE001 -- report why and go on: the other steps stand
            say(f"skipped: the server did not start (missing: {', '.join(missing) or 'none'}): {str(error)[-2500:]}")
            return "skipped (the server did not start; see above)"
        try:
            shutil.copy(REPO / "workflows" / "vea_example.png", server.input_dir / "vea_example.png")
            answers = []
            for what, prompt in prompts:
                started = time.monotonic()
                try:
                    entry, status = server.run(prompt, timeout=120)
                except Exception as error:  # noqa: BLE001 -- rejected, failed or too slow: show the server's side
                    say(f"  FAILED: {what}: {str(error)[:1500]}\n{server.log_tail(40)}")
                    return "FAILED (a prompt did not finish)"
                answers.append((status, _texts(entry, "5"), _texts(entry, "6")))
                say(f"  {status:>7} {time.monotonic() - started:6.2f} s  {what}")
        finally:
            log = server.log_text().splitlines()
            server.stop()
        moves = [line.strip() for line in log if "Requested to load" in line or "Unloading" in line]
        for line in moves:
            say("    log: " + line[-140:])
        succeeded = all(status == "success" and base and vea for status, base, vea in answers)
        same = succeeded and answers[3] == answers[0]
        unloaded = any("Unloading" in line and "Holder" in line for line in log)
        say(f"  Qwen2.5-VL offloaded while LLaVA ran: {unloaded}; answers after the round trip unchanged: {same}")
        return "ok" if same and unloaded else "FAILED (see above)"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- main


def guarded(step: str, run, *args):
    """``run(*args)``; an exception is printed and becomes ``FAILED (...)`` so the other steps still run."""
    try:
        return run(*args)
    except Exception as error:  # noqa: BLE001 -- one broken step must not hide the others' numbers
        traceback.print_exc()
        say(f"{step}: FAILED ({type(error).__name__}: {str(error)[:300]})")
        return f"FAILED ({type(error).__name__})"


def model_steps(name: str, folder: str, hub_name: str, device: str, clock: Clock, skip: set, dry_run: bool):
    """Build one model, print its shapes and token plan, run its kernel rows (and the offload step for Qwen)."""
    started = time.monotonic()
    model = build_model(FIXTURES / folder, device)
    describe_model(name, model)
    say(f"  built in {time.monotonic() - started:.1f} s")
    image_token_plan(name, FIXTURES / folder, model)
    rows = [] if "kernels" in skip else kernel_table(name, hub_name, model, device, clock, dry_run)
    offload = None
    if name == "Qwen2.5-VL-7B" and "offload" not in skip:
        offload = guarded("offload", run_offload, name, hub_name, model, device, clock, dry_run)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows, offload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, meta-device shapes only; runs nothing big")
    parser.add_argument("--skip", default="", help="comma list of steps to skip: kernels, offload, pipeline, comfyui")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    clock = Clock(BUDGET_S)
    device = report_env(args.dry_run)
    table = ["| model | image tokens | variant | seconds | GiB above weights |", "|---|---|---|---|---|"]
    results = {"offload": "skipped"}
    say("== build + kernels")
    for name, (folder, hub_name) in MODELS.items():
        done = guarded(name, model_steps, name, folder, hub_name, device, clock, skip, args.dry_run)
        if isinstance(done, str):
            results[name] = done
            continue
        table += done[0]
        if done[1] is not None:
            results["offload"] = done[1]
    results["pipeline"] = "skipped" if "pipeline" in skip else guarded("pipeline", run_pipeline, clock, args.dry_run)
    results["comfyui"] = "skipped" if "comfyui" in skip else guarded("comfyui", run_comfy, clock, args.dry_run)
    say("== summary")
    if not args.dry_run:
        say("\n".join(table))
    for step, result in results.items():
        say(f"{step}: {result}")
    say(f"total {clock.elapsed():.1f} s")
    failed = [step for step, result in results.items() if result.startswith(("FAILED", "failed", "timed out"))]
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
