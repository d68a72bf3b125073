"""The predictions file: append-only JSON Lines, per-rank files, torn-line repair, canonical merge.

One object per line, one line per (sample, method) prediction, each with at least
``id`` and ``method`` (the columns are :func:`vea_engine.evaluation.evaluate`'s).

Resuming: every row is appended and flushed as soon as it is computed
(:func:`append_row`); a new run reads the rows already on disk
(:func:`rows_on_disk`: the output file and any per-rank files) and only computes
the missing pairs. A torn last line (a crash while writing) is dropped and
recomputed. At the end the file is rewritten, atomically, in canonical order
(sample order, then the method order of :data:`vea_engine.methods.METHODS`), so an
interrupted-and-resumed run yields the same file as an uninterrupted one.

Data parallel: rank ``r`` writes ``<out>.rank<r>.jsonl`` (:func:`rank_path`);
:func:`merge_outputs` merges everything into ``<out>`` and removes the rank files
(by hand too, after a crash).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from .methods import METHODS

log = logging.getLogger(__name__)


def rank_path(out_jsonl: str | Path, rank: int) -> Path:
    """``preds.jsonl`` -> ``preds.rank<r>.jsonl`` (same folder)."""
    out = Path(out_jsonl)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix or '.jsonl'}")


def rank_files(out_jsonl: Path) -> list[Path]:
    """The ``.rank<r>`` files of ``out_jsonl`` that exist, by name."""
    files = out_jsonl.parent.glob(f"{out_jsonl.stem}.rank*{out_jsonl.suffix or '.jsonl'}")
    return sorted(files, key=lambda p: p.name)


def read_rows(path: str | Path, repair: bool = False) -> list[dict]:
    """Rows of a predictions file; a torn last line (no newline, bad JSON) is ignored.

    Args:
        path: a ``.jsonl`` written by :func:`vea_engine.evaluation.evaluate` (missing -> ``[]``).
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


def rows_on_disk(out_jsonl: Path, own: Path) -> list[dict]:
    """Every row already written for ``out_jsonl``: this process's file ``own`` first (its torn
    tail repaired, as it is appended to next), then the merged file and the other ranks' files."""
    rows = read_rows(own, repair=True)
    for path in [out_jsonl, *rank_files(out_jsonl)]:
        if path != own:
            rows += read_rows(path)
    return rows


def _dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def append_row(f: IO[str], row: dict) -> None:
    """Append one row to an open predictions file and flush it to disk (a crash keeps it)."""
    f.write(_dumps(row))
    f.flush()
    os.fsync(f.fileno())


def _canonical(rows: Iterable[dict], order: Sequence[str] | None) -> list[dict]:
    """Unique (id, method) rows sorted by sample order then method order (first occurrence wins)."""
    position = {sid: i for i, sid in enumerate(order or ())}
    method_rank = {m: i for i, m in enumerate(METHODS)}
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
    ranks = rank_files(out)
    rows = read_rows(out)
    for path in ranks:
        rows += read_rows(path)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(_dumps(row) for row in _canonical(rows, order))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    for path in ranks:
        path.unlink()
    return out
