"""The per-method score table of a predictions file (means x100, paired deltas vs ``base``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .methods import METHODS
from .predictions import read_rows


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
    and a ``base`` row, so a partially finished method is compared fairly. Methods
    are listed in :data:`~vea_engine.methods.METHODS` order, unknown ones after them.
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
    order = [m for m in METHODS if m in by_method] + sorted(m for m in by_method if m not in METHODS)

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
