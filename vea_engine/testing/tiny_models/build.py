"""Build tiny checkpoints: deterministic weights, saved like a download, marked, reused when up to date.

:func:`tiny_config` / :func:`tiny_processor` make one family's parts in memory;
:func:`build_tiny_model` writes a whole checkpoint folder (atomically, with the
``VEA_TINY_MODEL.json`` marker last); :func:`build_tiny_models` builds every family into
``root/<family>-tiny`` unless an up-to-date folder is already there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import registry
from .spec import TinySpec

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, ProcessorMixin

__all__ = [
    "BUILDER_VERSION",
    "MARKER_NAME",
    "build_tiny_model",
    "build_tiny_models",
    "read_marker",
    "tiny_config",
    "tiny_processor",
]

log = logging.getLogger(__name__)

#: Bump whenever a change in this package changes what is written (weights, configs,
#: tokenizer...); :func:`build_tiny_models` then rebuilds cached folders. The marker records
#: this number (no hash of the sources), so refactors that write the same bytes keep caches.
BUILDER_VERSION = 3
#: The marker file written last into every folder built here.
MARKER_NAME = "VEA_TINY_MODEL.json"


#: Names of per-head query / key norms (Gemma 3, Qwen3: ``q_norm``; LFM2: ``q_layernorm``).
_QK_NORMS = ("q_norm", "k_norm", "q_layernorm", "k_layernorm")


def _init_weights(model: Any, std: float, seed: int) -> None:
    """Deterministic normal init, independent of transformers' own ``_init_weights``.

    Linear and embedding weights ~ N(0, std); convolution (patch embedding) weights
    ~ N(0, 1 / fan_in) so patch features have unit scale; biases ~ N(0, std / 10).
    Norm weights keep their defaults (ones / zeros), except per-head query/key norms,
    whose gain is doubled. Other free parameters (CLIP's class embedding, LLaVA-NeXT's
    image newline, Gemma 3's projection matrix) ~ N(0, std).
    """
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    done: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv2d, nn.Conv3d)):
                weight = module.weight
                if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                    scale = weight[0].numel() ** -0.5
                else:
                    scale = std
                weight.copy_(torch.randn(weight.shape, generator=generator, dtype=torch.float32) * scale)
                done.add(id(weight))
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bias.copy_(torch.randn(bias.shape, generator=generator, dtype=torch.float32) * (std / 10))
                    done.add(id(bias))
            elif isinstance(module, (nn.LayerNorm,)) or type(module).__name__.endswith("RMSNorm"):
                done.update(id(p) for p in module.parameters(recurse=False))
        for name, param in model.named_parameters():
            if id(param) not in done:
                log.debug("tiny init: %s ~ N(0, %s)", name, std)
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32) * std)
        for name, module in model.named_modules():
            # Per-head q/k RMSNorm (Gemma 3, Qwen3, LFM2) caps |q . k| at head_dim * scale: 4 at head_dim 16, so
            # attention would be nearly uniform. Doubling their gain (w -> w + 1 for both the ``w`` and the
            # ``1 + w`` parametrisation) lets logits span +-16, like the other families' attention. Where the
            # logits are not scaled down (Gemma 4: scaling 1) they already span +-head_dim: no doubling.
            parent, _, leaf = name.rpartition(".")
            unscaled = getattr(model.get_submodule(parent), "scaling", None) == 1.0
            if leaf in _QK_NORMS and getattr(module, "weight", None) is not None and not unscaled:
                module.weight.add_(1.0)


def tiny_config(family: str, **overrides: Any) -> PreTrainedConfig:
    """The model config of a tiny ``family`` checkpoint (no weights).

    Benchmarks build larger in-memory models from it, e.g.
    ``Qwen2VLForConditionalGeneration(tiny_config("qwen2_vl", num_hidden_layers=24))``.

    Args:
        family: one of :data:`FAMILIES`.
        **overrides: :class:`TinySpec` fields (``num_hidden_layers=8``, ``hidden_size=128``,
            ``max_pixels=...`` for Qwen, ``image_size=336`` for LLaVA...).

    Returns:
        The transformers config (``Qwen2VLConfig``, ``Gemma3Config``, ``LlavaNextConfig``...);
        its vocabulary size and special-token ids match the tiny tokenizer.

    Raises:
        ValueError: unknown family, unknown override or inconsistent sizes.
    """
    builder = registry.family_builder(family)
    spec = registry.spec_for(family, overrides)
    return builder.config(spec, builder.tokenizer(spec))


def tiny_processor(family: str, **overrides: Any) -> ProcessorMixin:
    """The processor (tokenizer, image processor, chat template) of a tiny ``family`` checkpoint.

    Pairs with :func:`tiny_config` for in-memory models (benchmarks): the same overrides
    give a processor whose token layout matches that config.

    Raises:
        ValueError: unknown family, unknown override or inconsistent sizes.
        ImportError: the family's processor needs a package that is not installed.
    """
    builder = registry.family_builder(family)
    spec = registry.spec_for(family, overrides)
    registry.require(family)
    return builder.processor(spec, builder.tokenizer(spec))


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``VEA_TINY_MODEL.json`` of ``folder`` as a dict, or None when absent/unreadable."""
    path = Path(folder) / MARKER_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _strip_name_or_path(config_file: Path) -> None:
    """Remove ``_name_or_path`` entries (top level and sub-configs) from a saved config."""
    data = json.loads(config_file.read_text(encoding="utf-8"))

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "_name_or_path"}
        return node

    cleaned = strip(data)
    if cleaned != data:
        config_file.write_text(json.dumps(cleaned, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_parts(family: str, spec: TinySpec, seed: int, folder: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Build every part of a tiny ``family`` checkpoint and save it into ``folder`` (exists, empty).

    Returns:
        The marker written to ``folder / MARKER_NAME``.
    """
    import torch
    import transformers
    from transformers import GenerationConfig

    builder = registry.family_builder(family)
    tokenizer = builder.tokenizer(spec)
    config = builder.config(spec, tokenizer)
    processor = builder.processor(spec, tokenizer)
    model_class = getattr(transformers, builder.model_class)

    with torch.random.fork_rng(devices=[]):  # seed without disturbing the caller's RNG stream
        torch.manual_seed(seed)
        model = model_class(config).to(torch.float32).eval()
        _init_weights(model, spec.initializer_range, seed)
    model.generation_config = GenerationConfig(do_sample=False, num_beams=1, **builder.generation(tokenizer))

    processor.save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)
    for name in ("config.json", "generation_config.json"):
        if (folder / name).is_file():
            _strip_name_or_path(folder / name)
    marker = {"family": family, "builder_version": BUILDER_VERSION, "seed": seed, "overrides": dict(overrides)}
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return marker


def build_tiny_model(family: str, out_dir: str | os.PathLike, seed: int = 0, **overrides: Any) -> Path:
    """Build and save one tiny random-weight checkpoint of ``family``.

    The folder is assembled next to ``out_dir`` and moved into place at the end, so a
    crash never leaves a half-written checkpoint. An existing ``out_dir`` is replaced
    only when it is empty or was itself built here (has a ``VEA_TINY_MODEL.json``).

    Args:
        family: one of :data:`FAMILIES`.
        out_dir: the checkpoint folder to write.
        seed: seeds ``torch.manual_seed`` and the weight init; same seed -> same weights.
        **overrides: :class:`TinySpec` fields, e.g. ``num_hidden_layers=8``; for larger
            images ``max_pixels=...`` (Qwen) or ``image_size=336`` (LLaVA).

    Returns:
        The checkpoint folder (``out_dir`` as a ``Path``).

    Raises:
        ValueError: unknown family or override, or ``out_dir`` holds something else.
    """
    spec = registry.spec_for(family, overrides)
    registry.require(family)
    target = Path(out_dir).expanduser()
    if target.exists():
        if not target.is_dir():
            raise ValueError(f"tiny {family}: {target} exists and is not a folder.")
        if any(target.iterdir()) and read_marker(target) is None:
            raise ValueError(
                f"tiny {family}: {target} is not empty and has no {MARKER_NAME}; refusing to overwrite it. "
                "Pick an empty or new folder."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        marker = _save_parts(family, spec, seed, staging, overrides)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same build first; keep its identical result.
            if read_marker(target) != marker:
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("built tiny %s checkpoint (seed %d) in %s", family, seed, target)
    return target


def _up_to_date(folder: Path, family: str, seed: int) -> bool:
    marker = read_marker(folder)
    return (
        marker is not None
        and marker.get("family") == family
        and marker.get("builder_version") == BUILDER_VERSION
        and marker.get("seed") == seed
        and not marker.get("overrides")
        and (folder / "config.json").is_file()
        and (folder / "model.safetensors").is_file()
    )


def build_tiny_models(root: str | os.PathLike, families: Iterable[str] | None = None, seed: int = 0) -> dict[str, Path]:
    """Build each family into ``root/<family>-tiny`` unless an up-to-date one is there.

    Up to date = its ``VEA_TINY_MODEL.json`` names the same family, :data:`BUILDER_VERSION`
    and ``seed``, with no overrides. Stale folders built here are rebuilt.

    Args:
        root: folder holding the checkpoints (created if missing).
        families: which families; default every family whose processor requirements are
            installed (:func:`available_families`; the others are skipped with a warning).
            A family named explicitly must be buildable (ImportError otherwise).
        seed: weight seed.

    Returns:
        ``family -> checkpoint folder``, in the order given.
    """
    if families is None:
        families = registry.available_families()
        for family in sorted(set(registry.FAMILIES) - set(families)):
            log.warning(
                "tiny %s checkpoint skipped: %s not installed", family, ", ".join(registry.missing_requirements(family))
            )
    elif isinstance(families, str):
        families = (families,)
    families = tuple(families)
    for family in families:
        registry.family_builder(family)
    for family in families:
        registry.require(family)
    root_path = Path(root).expanduser()
    paths: dict[str, Path] = {}
    for family in families:
        folder = root_path / f"{family}-tiny"
        if _up_to_date(folder, family, seed):
            log.debug("tiny %s checkpoint up to date in %s", family, folder)
        else:
            build_tiny_model(family, folder, seed=seed)
        paths[family] = folder
    return paths
