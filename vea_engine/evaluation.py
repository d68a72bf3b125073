"""Evaluation of VEA and its ablations on a manifest: one scored row per (sample, method).

Each row is one line of the predictions file (:mod:`vea_engine.predictions`)::

    {"index": 3, "id": "q17", "method": "vea", "question": "...", "answers": ["4821"],
     "prediction": "4821", "em": 1.0, "f1": 1.0, "anls": 1.0, "vqa_acc": null,
     "model": "...", "layers": [14, 15, 17, 19], "layer_source": "preset:...",
     "settings": {"lam": 10.0, "sigma": 0.5, "alpha": 0.5, "max_new_tokens": 50}}

``em`` / ``f1`` / ``anls`` / ``vqa_acc`` are in [0, 1] (:func:`score`);
``vqa_acc`` is ``null`` when a sample has fewer than two reference answers (the
VQA leave-one-out accuracy is undefined then). ``layers`` is ``null`` for methods
that use no attention (``base``, ``inst``).

:func:`evaluate` is resumable (rows already on disk are not recomputed, see
:mod:`vea_engine.predictions`) and data parallel: under ``accelerate launch`` /
``torchrun`` every rank evaluates its shard (:mod:`vea_engine.distributed`) into
``<out>.rank<r>.jsonl``; after a barrier, rank 0 merges everything into ``<out>``.
The per-method table is :func:`vea_engine.summary.summarize`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULTS
from .distributed import DistContext, dist_context, shard
from .images import to_rgb_uint8
from .inputs import Progress
from .layers import LayerSelection, for_model
from .methods import METHODS, MethodRunner
from .methods import check_methods as _check_methods
from .predictions import append_row, merge_outputs, rank_path, rows_on_disk

log = logging.getLogger(__name__)

#: Methods in canonical (output and table) order (:data:`vea_engine.methods.METHODS`).
ALL_METHODS: tuple[str, ...] = tuple(METHODS)


def score(prediction: str, answers: Sequence[str]) -> dict[str, float | None]:
    """EM, token F1, ANLS (all in [0, 1]) and VQA accuracy (None with < 2 references)."""
    from .metrics import exact_match, token_f1
    from .vqa_metrics import anls, vqa_accuracy

    return {
        "em": exact_match(prediction, answers),
        "f1": token_f1(prediction, answers),
        "anls": anls(prediction, answers),
        "vqa_acc": vqa_accuracy(prediction, answers) if len(answers) >= 2 else None,
    }


def check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """Validated, de-duplicated method names (a ``"base,inst,vea"`` string is split on commas)."""
    return tuple(m.name for m in _check_methods(methods, "eval"))


# ---------------------------------------------------------------------------------------------
# What a run computes, and what is left of it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What one run computes and stamps on every row (the same on every rank).

    Attributes:
        model: the answering model's name.
        selection: the layers of the ``selected`` methods.
        layers: per method name, the layers its rows carry (None: no attention).
        settings: the hyper-parameters written on every row.
        index: sample id -> position in the manifest order.
        lam, sigma, alpha, max_new_tokens, rounding: as given to :func:`evaluate`.
    """

    model: str
    selection: LayerSelection
    layers: dict[str, list[int] | None]
    settings: dict[str, Any]
    index: dict[str, int]
    lam: float
    sigma: float
    alpha: float
    max_new_tokens: int
    rounding: str


@dataclass(frozen=True)
class _Pending:
    """This rank's share of a run: its file, the pairs still to compute, and its progress counts."""

    own: Path
    todo: list[tuple[Any, str]]
    done: int
    total: int


def _check_arguments(samples: list[Any], max_new_tokens: Any) -> list[str]:
    """The sample ids, after the checks that need no model (unique ids, a positive answer length)."""
    ids = [str(s.id) for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(sid for sid, count in Counter(ids).items() if count > 1)
        raise ValueError(
            f"eval: sample id {dup!r} occurs more than once; ids must be unique (load_manifest rejects repeats)."
        )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"eval: max_new_tokens must be a positive int, got {max_new_tokens!r}.")
    return ids


def _plan(
    vlm: Any, ids: list[str], layers: Any, lam: float, sigma: float, alpha: float, max_new_tokens: int, rounding: str
) -> _Plan:
    """Resolve and check the layers for ``vlm`` and fix the per-row model, layers and settings."""
    kinds = vlm.layer_kinds
    selection = for_model(layers, kinds, vlm.name, "eval")
    layer_sets = {"selected": selection.layers, "all": kinds.attention}  # every softmax-attention layer
    settings = {"lam": float(lam), "sigma": float(sigma), "alpha": float(alpha), "max_new_tokens": max_new_tokens}
    if rounding != "truncate":  # the paper's rows carry no key for it
        settings["rounding"] = rounding
    return _Plan(
        model=str(vlm.name),
        selection=selection,
        layers={m.name: None if m.layers is None else list(layer_sets[m.layers]) for m in METHODS.values()},
        settings=settings,
        index={sid: i for i, sid in enumerate(ids)},
        lam=lam, sigma=sigma, alpha=alpha, max_new_tokens=max_new_tokens, rounding=rounding,
    )  # fmt: skip


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.realpath(a) == os.path.realpath(b)


def _check_resumable(rows: list[dict], plan: _Plan, methods: Sequence[str], path: Path) -> None:
    """Refuse to mix rows made by another model or under other settings into this run's file.

    Model and settings must match on every row; layers only on the methods this run computes.
    """
    for row in rows:
        method = row["method"]
        if method not in plan.layers:
            continue
        want = {"settings": plan.settings, "layers": plan.layers[method]}
        for key in ("settings", "layers"):
            if key == "layers" and method not in methods:
                continue
            if row.get(key) != want[key]:
                raise ValueError(
                    f"eval: {path} already holds {method!r} rows made with {key}={row.get(key)!r}, but this "
                    f"run uses {want[key]!r}; pass a new --out (or delete the file) to evaluate other settings."
                )
        if not _same_model(str(row.get("model")), plan.model):
            raise ValueError(
                f"eval: {path} already holds rows of model {row.get('model')!r}, not {plan.model!r}; "
                "pass a new --out for another model."
            )


def _pending(out: Path, plan: _Plan, samples: list[Any], methods: Sequence[str], context: DistContext) -> _Pending:
    """This rank's file and the (sample, method) pairs of its shard that are not on disk yet."""
    out.parent.mkdir(parents=True, exist_ok=True)
    own = out if context.world == 1 else rank_path(out, context.rank)
    existing = rows_on_disk(out, own)
    _check_resumable(existing, plan, methods, own)
    done = {(str(row["id"]), row["method"]) for row in existing}
    mine = shard(samples, context.rank, context.world)
    todo = [(s, m) for s in mine for m in methods if (str(s.id), m) not in done]
    total = len(mine) * len(methods)
    log.info(
        "eval rank %d/%d: %d samples x %d methods, %d already done, %d to run -> %s",
        context.rank, context.world, len(mine), len(methods), total - len(todo), len(todo), own,
    )  # fmt: skip
    return _Pending(own, todo, total - len(todo), total)


# ---------------------------------------------------------------------------------------------
# Running the methods
# ---------------------------------------------------------------------------------------------


def _answers(vlm: Any, plan: _Plan, todo: list[tuple[Any, str]], batch_size: int = 1) -> Iterator[tuple[Any, str, str]]:
    """``(sample, method, prediction)`` per pair of ``todo``.

    Pending samples are taken ``batch_size`` at a time, in order; within such a window, samples with
    the same image size and the same pending methods form one batch, and one :class:`MethodRunner`
    shares the attribution, evidence map and highlighted image of a batch between its methods. With
    ``batch_size > 1`` it also decodes their answers two methods at a time as one batch
    (:meth:`MethodRunner.answers`); 1 answers every method alone, exactly as a single run.
    """
    methods: dict[int, list[str]] = {}
    samples: list[Any] = []
    for sample, method in todo:
        if id(sample) not in methods:
            methods[id(sample)] = []
            samples.append(sample)
        methods[id(sample)].append(method)
    for start in range(0, len(samples), batch_size):
        window = samples[start : start + batch_size]
        images = [to_rgb_uint8(sample.image, f"sample {sample.id}") for sample in window]  # [H, W, 3] uint8 each
        buckets: dict[tuple, list[int]] = {}
        for i, (sample, image) in enumerate(zip(window, images, strict=True)):
            buckets.setdefault((image.shape, tuple(methods[id(sample)])), []).append(i)
        for (_, names), members in buckets.items():
            runner = MethodRunner(vlm, [images[i] for i in members], [window[i].question for i in members],
                                  plan.selection, plan.lam, plan.sigma, plan.alpha, plan.max_new_tokens,
                                  rounding=plan.rounding, methods=[METHODS[m] for m in names],
                                  joint_decode=batch_size > 1)  # fmt: skip
            for method, predictions in runner.answers([METHODS[m] for m in names]).items():
                for sample, prediction in zip((window[i] for i in members), predictions, strict=True):
                    yield sample, method, prediction


def _row(plan: _Plan, sample: Any, method: str, prediction: str) -> dict[str, Any]:
    """The predictions-file row of one answer (module docstring), scored against the sample's answers."""
    layers = METHODS[method].layers
    return {
        "index": plan.index[str(sample.id)],
        "id": str(sample.id),
        "method": method,
        "question": sample.question,
        "answers": list(sample.answers),
        "prediction": prediction,
        **score(prediction, list(sample.answers)),
        "model": plan.model,
        "layers": plan.layers[method],
        "layer_source": None if layers is None else (plan.selection.source if layers == "selected" else "all"),
        "settings": plan.settings,
    }


def _merge_when_complete(out: Path, ids: list[str], context: DistContext) -> None:
    """Rank 0 merges every rank's rows into ``out`` once all have finished (no barrier: no merge,
    except single-process runs, which always merge)."""
    if context.world == 1 or context.state is not None:
        context.barrier()  # every rank file is complete
        if context.rank == 0:
            merge_outputs(out, ids)
        context.barrier()  # no rank returns before the merged file exists


def evaluate(
    vlm: Any,
    samples: Sequence[Any],
    methods: Sequence[str] | str = ("base", "inst", "vea"),
    out_jsonl: str | Path = "preds.jsonl",
    layers: Any = None,
    lam: float = DEFAULTS.lam,
    sigma: float = DEFAULTS.sigma,
    alpha: float = DEFAULTS.alpha,
    max_new_tokens: int = DEFAULTS.max_new_tokens,
    context: DistContext | None = None,
    progress: Progress | None = None,
    rounding: str = "truncate",
    batch_size: int = 1,
) -> Path:
    """Answer every (sample, method) pair not yet in ``out_jsonl`` and score it.

    Args:
        vlm: the loaded model (the same model makes the masks).
        samples: manifest rows (:class:`~vea_engine.data.Sample`: ``id``, ``image``
            path, ``question``, ``answers``), in output order. Ids must be unique.
        methods: names from :data:`~vea_engine.methods.METHODS` (or ``"base,inst,vea"``),
            e.g. ``base``, ``inst``, ``vea`` and the ablations ``vea_no_denoise``,
            ``vea_no_smooth``, ``vea_all_layers``, ``vea_no_hint``.
        out_jsonl: the predictions file (appended to; see :mod:`vea_engine.predictions`).
        layers: the attribution layers of the ``vea*`` methods: a
            :class:`~vea_engine.layers.LayerSelection` (e.g. ``LayerProfile.selection()``),
            indices, a mode name, or None (paper preset, else all layers).
        lam, sigma, alpha, max_new_tokens: paper hyper-parameters.
        context: this process's rank and world size; default
            :func:`~vea_engine.distributed.dist_context`. A hand-made ``DistContext(rank,
            world)`` without a ``state`` has no barrier: its rank files are merged by
            :func:`~vea_engine.predictions.merge_outputs`, or by the next single-process
            run on the same ``out_jsonl``.
        progress: ``progress(done, total)`` after each row of this rank; may raise
            to stop (rows written so far are kept; call again to resume).
        rounding: how canvases and highlighted images become uint8 (``truncate``: the reference).
        batch_size: samples answered together (same-size images with the same pending methods
            share a batch). 1 (the default) answers each sample and method alone, exactly as a
            single run; larger batches pad prompts of different lengths and decode two methods'
            answers as one batch, which can move near-tied greedy tokens.

    Returns:
        ``out_jsonl`` (merged and in canonical order once every rank has finished).
    """
    methods = check_methods(methods)
    samples = list(samples)
    ids = _check_arguments(samples, max_new_tokens)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"eval: batch_size must be a positive integer, got {batch_size!r}; e.g. 1 or 8.")
    context = dist_context() if context is None else context
    shard([], context.rank, context.world)  # validates rank / world
    plan = _plan(vlm, ids, layers, lam, sigma, alpha, max_new_tokens, rounding)
    out = Path(out_jsonl)
    pending = _pending(out, plan, samples, methods, context)
    finished = pending.done
    with open(pending.own, "a", encoding="utf-8") as f:
        for sample, method, prediction in _answers(vlm, plan, pending.todo, batch_size):
            append_row(f, _row(plan, sample, method, prediction))
            finished += 1
            if progress is not None:
                progress(finished, pending.total)
    _merge_when_complete(out, ids, context)
    return out
