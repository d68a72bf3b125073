"""Resumable, data-parallel evaluation of VEA and its ablations on a manifest.

Output: JSON Lines, one object per (sample, method) prediction::

    {"index": 3, "id": "q17", "method": "vea", "question": "...", "answers": ["4821"],
     "prediction": "4821", "em": 1.0, "f1": 1.0, "anls": 1.0, "vqa_acc": null,
     "model": "...", "layers": [14, 15, 17, 19], "layer_source": "preset:...",
     "settings": {"lam": 10.0, "sigma": 0.5, "alpha": 0.5, "max_new_tokens": 50}}

``em`` / ``f1`` / ``anls`` / ``vqa_acc`` are in [0, 1] (:mod:`vea_engine.metrics`);
``vqa_acc`` is ``null`` when a sample has fewer than two reference answers (the
VQA leave-one-out accuracy is undefined then). ``layers`` is ``null`` for methods
that use no attention (``base``, ``inst``).

Resuming: every row is appended and flushed as soon as it is computed; a new run
reads the rows already on disk (the output file and any per-rank files) and only
computes the missing (sample, method) pairs. A torn last line (a crash while
writing) is dropped and recomputed. At the end the file is rewritten, atomically,
in canonical order (sample order, then method order of :data:`ALL_METHODS`), so an
interrupted-and-resumed run yields the same file as an uninterrupted one.

Data parallel: under ``accelerate launch`` / ``torchrun`` every rank evaluates
``shard(samples, rank, world)`` into ``<out>.rank<r>.jsonl``; after a barrier,
rank 0 merges everything into ``<out>`` and removes the rank files
(:func:`merge_outputs` does the same by hand after a crash).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DEFAULTS
from .inputs import Progress
from .methods import METHODS, MethodRunner
from .methods import check_methods as _check_methods

log = logging.getLogger(__name__)

#: Methods in canonical (output and table) order (:data:`vea_engine.methods.METHODS`).
ALL_METHODS: tuple[str, ...] = tuple(METHODS)



# ---------------------------------------------------------------------------------------------
# Sharding and distributed context
# ---------------------------------------------------------------------------------------------


def shard(samples: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The samples rank ``rank`` of ``world`` evaluates: every ``world``-th one from ``rank``.

    Strided (not blocked) so that ranks get similar mixes of easy and hard samples;
    the union over ranks is ``samples`` and the shards are disjoint.
    """
    if not isinstance(world, int) or world < 1:
        raise ValueError(f"shard: world size must be an int >= 1, got {world!r}.")
    if not isinstance(rank, int) or not 0 <= rank < world:
        raise ValueError(f"shard: rank must be an int in 0..{world - 1}, got {rank!r}.")
    return list(samples)[rank::world]


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and a barrier; single-process when not launched distributed."""

    rank: int = 0
    world: int = 1
    state: Any = None  # accelerate.PartialState when distributed

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    @property
    def device(self) -> Any:
        """The device accelerate assigned this rank (None when single-process)."""
        return None if self.state is None else self.state.device


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by ``accelerate launch`` / ``torchrun`` (1 when not launched)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def dist_context(cpu: bool | None = None) -> DistContext:
    """Rank and world from accelerate's ``PartialState`` when launched distributed, else ``(0, 1)``.

    Args:
        cpu: force the CPU (gloo) backend; default: when no CUDA device exists.
    """
    if launched_world_size() <= 1:
        return DistContext()
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    if cpu is None:
        cpu = not torch.cuda.is_available()
    # A rank that finishes early waits at the merge barrier for the slowest one: allow long runs.
    state = PartialState(cpu=cpu, timeout=timedelta(hours=12))
    return DistContext(state.process_index, state.num_processes, state)


# ---------------------------------------------------------------------------------------------
# Reading and writing rows
# ---------------------------------------------------------------------------------------------


def rank_path(out_jsonl: str | Path, rank: int) -> Path:
    """``preds.jsonl`` -> ``preds.rank<r>.jsonl`` (same folder)."""
    out = Path(out_jsonl)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix or '.jsonl'}")


def _rank_files(out_jsonl: Path) -> list[Path]:
    files = out_jsonl.parent.glob(f"{out_jsonl.stem}.rank*{out_jsonl.suffix or '.jsonl'}")
    return sorted(files, key=lambda p: p.name)


def read_rows(path: str | Path, repair: bool = False) -> list[dict]:
    """Rows of a predictions file; a torn last line (no newline, bad JSON) is ignored.

    Args:
        path: a ``.jsonl`` written by :func:`evaluate` (missing -> ``[]``).
        repair: also truncate the file to its last complete line (before appending).

    Raises:
        ValueError: a complete line in the middle is not a JSON object with ``id`` and
            ``method`` (the file is not ours or was edited): fix or remove it.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # bytes up to the last complete line
    if end < len(data) and repair:  # (another rank's file may be mid-write: just ignore its tail)
        log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", path, len(data) - end)
        with open(path, "r+b") as f:
            f.truncate(end)
    rows = []
    for number, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}:{number}: not a JSON line ({error}); this file was not written by evaluate "
                "or was edited -- fix or delete that line, or pass another --out."
            ) from error
        if not isinstance(row, dict) or "id" not in row or "method" not in row:
            raise ValueError(f"{path}:{number}: a prediction row needs 'id' and 'method'; got {line[:80]!r}.")
        rows.append(row)
    return rows


def _dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def _canonical(rows: Iterable[dict], order: Sequence[str] | None) -> list[dict]:
    """Unique (id, method) rows sorted by sample order then method order (first occurrence wins)."""
    position = {sid: i for i, sid in enumerate(order or ())}
    method_rank = {m: i for i, m in enumerate(ALL_METHODS)}
    unique: dict[tuple[str, str], dict] = {}
    for row in rows:
        unique.setdefault((str(row["id"]), row["method"]), row)

    def key(row: dict):
        sid = str(row["id"])
        known = sid in position
        return (
            0 if known else 1,
            position.get(sid, row.get("index", math.inf)),
            sid,
            method_rank.get(row["method"], len(method_rank)),
            row["method"],
        )

    return sorted(unique.values(), key=key)


def merge_outputs(out_jsonl: str | Path, order: Sequence[str] | None = None) -> Path:
    """Merge ``out_jsonl`` and its ``.rank<r>`` files into ``out_jsonl``, canonical order, atomically.

    Rows are deduplicated by (id, method); ``order`` gives the sample-id order
    (default: each row's ``index``). Rank files are removed after the merge.

    Returns:
        ``out_jsonl`` as a Path.
    """
    out = Path(out_jsonl)
    rank_files = _rank_files(out)
    rows = read_rows(out)
    for path in rank_files:
        rows += read_rows(path)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(_dumps(row) for row in _canonical(rows, order))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    for path in rank_files:
        path.unlink()
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def score(prediction: str, answers: Sequence[str]) -> dict[str, float | None]:
    """EM, token F1, ANLS (all in [0, 1]) and VQA accuracy (None with < 2 references)."""
    from .metrics import anls, exact_match, token_f1, vqa_accuracy

    return {
        "em": exact_match(prediction, answers),
        "f1": token_f1(prediction, answers),
        "anls": anls(prediction, answers),
        "vqa_acc": vqa_accuracy(prediction, answers) if len(answers) >= 2 else None,
    }


def check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    """Validated, de-duplicated method names (a ``"base,inst,vea"`` string is split on commas)."""
    return tuple(m.name for m in _check_methods(methods, "eval"))


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.realpath(a) == os.path.realpath(b)


def _check_resumable(rows: list[dict], expected: dict[str, dict], methods: Sequence[str], path: Path) -> None:
    """Refuse to mix rows made by another model or under other settings into this run's file.

    Model and settings must match on every row; layers only on the methods this run computes.
    """
    for row in rows:
        want = expected.get(row["method"])
        if want is None:
            continue
        for key in ("settings", "layers"):
            if key == "layers" and row["method"] not in methods:
                continue
            if row.get(key) != want[key]:
                raise ValueError(
                    f"eval: {path} already holds {row['method']!r} rows made with {key}={row.get(key)!r}, but this "
                    f"run uses {want[key]!r}; pass a new --out (or delete the file) to evaluate other settings."
                )
        if not _same_model(str(row.get("model")), want["model"]):
            raise ValueError(
                f"eval: {path} already holds rows of model {row.get('model')!r}, not {want['model']!r}; "
                "pass a new --out for another model."
            )


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
) -> Path:
    """Answer every (sample, method) pair not yet in ``out_jsonl`` and score it.

    Args:
        vlm: the loaded model (the same model makes the masks).
        samples: manifest rows (:class:`~vea_engine.data.Sample`: ``id``, ``image``
            path, ``question``, ``answers``), in output order. Ids must be unique.
        methods: names from :data:`ALL_METHODS` (or ``"base,inst,vea"``): ``base``
            (qa prompt, original image), ``inst`` (vea prompt, original), ``vea``
            (vea prompt, highlighted), ablations ``vea_no_denoise``, ``vea_no_smooth``,
            ``vea_all_layers`` (attribution over every layer, i.e. no profiling) and
            ``vea_no_hint`` (highlighted image, qa prompt).
        out_jsonl: the predictions file (appended to; see module docstring).
        layers: the attribution layers of the ``vea*`` methods: a
            :class:`~vea_engine.layers.LayerSelection` (e.g. ``LayerProfile.selection()``),
            indices, a mode name, or None (paper preset, else all layers).
        lam, sigma, alpha, max_new_tokens: paper hyper-parameters.
        context: this process's rank and world size; default :func:`dist_context`
            (accelerate ``PartialState`` under ``accelerate launch``, else rank 0 of 1).
            A hand-made ``DistContext(rank, world)`` without a ``state`` (e.g. separate
            cluster jobs) has no barrier: its rank files are merged by
            :func:`merge_outputs`, or by the next single-process run on the same ``out_jsonl``.
        progress: ``progress(done, total)`` after each row of this rank; may raise
            to stop (rows written so far are kept; call again to resume).
        rounding: how canvases and highlighted images become uint8 (``truncate``: the reference).

    Returns:
        ``out_jsonl`` (merged and in canonical order once every rank has finished).
    """
    from .images import to_rgb_uint8
    from .layers import LayerSelection, select_layers

    methods = check_methods(methods)
    samples = list(samples)
    ids = [str(s.id) for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(sid for sid, count in Counter(ids).items() if count > 1)
        raise ValueError(
            f"eval: sample id {dup!r} occurs more than once; ids must be unique (load_manifest rejects repeats)."
        )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"eval: max_new_tokens must be a positive int, got {max_new_tokens!r}.")
    context = dist_context() if context is None else context
    rank, world = context.rank, context.world
    shard([], rank, world)  # validates rank / world
    selection = layers if isinstance(layers, LayerSelection) else select_layers(layers, vlm.num_layers, vlm.name)
    if selection.num_layers is not None and selection.num_layers != vlm.num_layers:
        raise ValueError(
            f"eval: the layers ({selection.source}) were chosen for a {selection.num_layers}-layer model but "
            f"{vlm.name} has {vlm.num_layers} decoder layers; profile this model or pass its own layers."
        )
    layer_sets = {"selected": selection.check(vlm.num_layers), "all": tuple(range(vlm.num_layers))}
    settings = {"lam": float(lam), "sigma": float(sigma), "alpha": float(alpha), "max_new_tokens": max_new_tokens}
    if rounding != "truncate":  # the paper's rows carry no key for it
        settings["rounding"] = rounding
    expected = {
        m: {
            "model": str(vlm.name),
            "settings": settings,
            "layers": None if METHODS[m].layers is None else list(layer_sets[METHODS[m].layers]),
        }
        for m in ALL_METHODS
    }

    out = Path(out_jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    own = out if world == 1 else rank_path(out, rank)
    existing = read_rows(own, repair=True)
    for path in [out, *_rank_files(out)]:
        if path != own:
            existing += read_rows(path)
    _check_resumable(existing, expected, methods, own)
    done = {(str(row["id"]), row["method"]) for row in existing}

    index = {sid: i for i, sid in enumerate(ids)}
    mine = shard(samples, rank, world)
    todo = [(s, m) for s in mine for m in methods if (str(s.id), m) not in done]
    total = len(mine) * len(methods)
    finished = total - len(todo)
    log.info(
        "eval rank %d/%d: %d samples x %d methods, %d already done, %d to run -> %s",
        rank, world, len(mine), len(methods), finished, len(todo), own,
    )
    work: MethodRunner | None = None
    current = None
    with open(own, "a", encoding="utf-8") as f:
        for sample, method in todo:
            if work is None or current is not sample:
                image = to_rgb_uint8(sample.image, f"sample {sample.id}")  # [H, W, 3] uint8
                work = MethodRunner(vlm, [image], sample.question, selection, lam, sigma, alpha, max_new_tokens,
                                    rounding=rounding)
                current = sample
            prediction = work.answer(METHODS[method])[0]
            row = {
                "index": index[str(sample.id)],
                "id": str(sample.id),
                "method": method,
                "question": sample.question,
                "answers": list(sample.answers),
                "prediction": prediction,
                **score(prediction, list(sample.answers)),
                "model": expected[method]["model"],
                "layers": expected[method]["layers"],
                "layer_source": None if METHODS[method].layers is None else (
                    selection.source if METHODS[method].layers == "selected" else "all"
                ),
                "settings": settings,
            }
            f.write(_dumps(row))
            f.flush()
            os.fsync(f.fileno())
            finished += 1
            if progress is not None:
                progress(finished, total)
    if world == 1 or context.state is not None:
        context.barrier()  # every rank file is complete
        if rank == 0:
            merge_outputs(out, ids)
        context.barrier()  # no rank returns before the merged file exists
    return out


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSummary:
    """Mean scores (x100) of one method.

    Attributes:
        method: method name.
        n: rows scored.
        em, f1, anls: means x100.
        vqa_acc: mean x100 over rows with a VQA accuracy (None if none has one).
        delta_em, delta_f1, delta_anls: method minus ``base`` over the samples both
            have (None without ``base`` rows, 0 for ``base``).
    """

    method: str
    n: int
    em: float
    f1: float
    anls: float
    vqa_acc: float | None
    delta_em: float | None
    delta_f1: float | None
    delta_anls: float | None


@dataclass(frozen=True)
class Summary:
    """Per-method table of an evaluation file; ``str(summary)`` is the printed table."""

    rows: tuple[MethodSummary, ...]
    path: str

    def method(self, name: str) -> MethodSummary:
        for row in self.rows:
            if row.method == name:
                return row
        raise KeyError(f"no {name!r} rows in {self.path}; methods present: {[r.method for r in self.rows]}")

    def __str__(self) -> str:
        def num(value: float | None, signed: bool = False) -> str:
            if value is None:
                return "-"
            return f"{value:+.1f}" if signed else f"{value:.1f}"

        header = f"{'method':<16}{'n':>6}{'EM':>8}{'F1':>8}{'ANLS':>8}{'VQA':>8}{'dEM':>8}{'dF1':>8}{'dANLS':>8}"
        lines = [f"scores x100, deltas vs base on shared samples  ({self.path})", header, "-" * len(header)]
        for r in self.rows:
            lines.append(
                f"{r.method:<16}{r.n:>6}{num(r.em):>8}{num(r.f1):>8}{num(r.anls):>8}{num(r.vqa_acc):>8}"
                f"{num(r.delta_em, True):>8}{num(r.delta_f1, True):>8}{num(r.delta_anls, True):>8}"
            )
        return "\n".join(lines)


def summarize(jsonl: str | Path) -> Summary:
    """Per-method mean EM / F1 / ANLS (and VQA accuracy) x100, with deltas vs ``base``.

    Deltas are paired: computed over the sample ids that have both the method's row
    and a ``base`` row, so a partially finished method is compared fairly.
    """
    path = Path(jsonl)
    if not path.is_file():
        raise ValueError(f"summarize: {path} does not exist; run 'python -m vea_engine eval' first.")
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"summarize: {path} holds no predictions.")
    by_method: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], {})[str(row["id"])] = row
    base = by_method.get("base")
    order = [m for m in ALL_METHODS if m in by_method] + sorted(m for m in by_method if m not in METHODS)

    def mean(values: list[float]) -> float:
        return 100.0 * sum(values) / len(values)

    table = []
    for method in order:
        got = by_method[method]
        vqa = [r["vqa_acc"] for r in got.values() if r.get("vqa_acc") is not None]
        deltas: dict[str, float | None] = {"em": None, "f1": None, "anls": None}
        if base is not None:
            shared = [sid for sid in got if sid in base]
            if shared:
                for key in deltas:
                    deltas[key] = mean([got[s][key] for s in shared]) - mean([base[s][key] for s in shared])
        table.append(
            MethodSummary(
                method=method,
                n=len(got),
                em=mean([r["em"] for r in got.values()]),
                f1=mean([r["f1"] for r in got.values()]),
                anls=mean([r["anls"] for r in got.values()]),
                vqa_acc=mean(vqa) if vqa else None,
                delta_em=deltas["em"],
                delta_f1=deltas["f1"],
                delta_anls=deltas["anls"],
            )
        )
    return Summary(tuple(table), str(path))
