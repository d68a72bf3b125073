"""Evidence-VQA dataset manifests: the JSONL format and its tolerant loader.

Manifest format -- JSON Lines, one object per line::

    {"id": "q17",                       # optional str (or int); default: the 1-based line number
     "image": "images/q17.png",         # relative to the manifest's folder, or absolute
     "question": "What is the code?",   # non-empty str
     "answers": ["4821"],               # non-empty list of non-empty str
     "boxes": [[x0, y0, x1, y1], ...]}  # optional evidence boxes, pixels on the ORIGINAL image

Boxes are ``xyxy`` in pixels of the image file as stored, ``x1``/``y1``
exclusive-style bounds: a box must satisfy ``0 <= x0 < x1 <= W`` and
``0 <= y0 < y1 <= H``. Numbers may be floats (Visual-CoT boxes are). Other keys
are ignored; blank lines are skipped.

:func:`load_manifest` never raises for a bad row: it returns the good samples
and a :class:`BadRow` (1-based line number + reason) for each skipped row, so
one broken line does not cost a whole evaluation run. Only a missing manifest
raises.

:func:`load_good_samples` is the same for long runs: bad rows are logged and skipped.
Converters from public dataset annotations to this format are in
:mod:`vea_engine.converters`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "Sample",
    "BadRow",
    "load_manifest",
    "load_good_samples",
]

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One validated manifest row.

    Attributes:
        id: row id (the manifest's ``id``, else the 1-based line number as str).
        image: absolute path of the image file.
        question: the question text.
        answers: acceptable answers, in manifest order (at least one).
        boxes: evidence boxes ``(x0, y0, x1, y1)`` as floats, pixels of the
            original image; ``()`` when the row has none.
        image_size: ``(W, H)`` of the image file, read from its header.
    """

    id: str
    image: Path
    question: str
    answers: tuple[str, ...]
    boxes: tuple[Box, ...]
    image_size: tuple[int, int]


@dataclass(frozen=True)
class BadRow:
    """A manifest row that was skipped.

    Attributes:
        line: 1-based line number in the manifest.
        reason: what is wrong and, where useful, how to fix it.
    """

    line: int
    reason: str


class _RowError(ValueError):
    """A reason to skip one manifest row (internal)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_id(row: dict, line: int) -> str:
    if "id" not in row or row["id"] is None:
        return str(line)
    value = row["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise _RowError(f"'id' must be a non-empty str or an int, got {value!r}")
    return str(value)


def _parse_question(row: dict) -> str:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _RowError(f"'question' is missing or empty (got {question!r}); every row needs a question")
    return question


def _parse_answers(row: dict) -> tuple[str, ...]:
    answers = row.get("answers")
    if not isinstance(answers, list) or len(answers) == 0:
        raise _RowError(f"'answers' is missing or empty (got {answers!r}); give a non-empty list of strings")
    for i, answer in enumerate(answers):
        if not isinstance(answer, str) or not answer.strip():
            raise _RowError(
                f"'answers'[{i}] is {answer!r}, expected a non-empty string "
                "(a blank reference would match every prediction under exact match)"
            )
    return tuple(answers)


def _resolve_image(row: dict, root: Path) -> tuple[Path, tuple[int, int]]:
    value = row.get("image")
    if not isinstance(value, str) or not value.strip():
        raise _RowError(f"'image' is missing or not a path string (got {value!r})")
    path = Path(value)
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise _RowError(
            f"image file not found: {path} (from 'image': {value!r}; "
            "relative paths are resolved against the manifest's folder)"
        )
    try:
        with Image.open(path) as image:  # lazy: reads the header only
            size = (int(image.width), int(image.height))
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the row unusable
        raise _RowError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return path.resolve(), size


def _parse_boxes(row: dict, size: tuple[int, int], require_boxes: bool) -> tuple[Box, ...]:
    if "boxes" not in row or row["boxes"] is None:
        if require_boxes:
            raise _RowError("'boxes' is missing but require_boxes=True; add evidence boxes or drop the row")
        return ()
    boxes = row["boxes"]
    if not isinstance(boxes, list):
        raise _RowError(f"'boxes' must be a list of [x0, y0, x1, y1], got {boxes!r}")
    if require_boxes and len(boxes) == 0:
        raise _RowError("'boxes' is empty but require_boxes=True; add evidence boxes or drop the row")
    width, height = size
    out = []
    for i, box in enumerate(boxes):
        if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
            raise _RowError(f"'boxes'[{i}] must be 4 finite numbers [x0, y0, x1, y1], got {box!r}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise _RowError(f"'boxes'[{i}] = {box} has x0 >= x1 or y0 >= y1; boxes are [x0, y0, x1, y1] (xyxy)")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise _RowError(
                f"'boxes'[{i}] = {box} lies outside the {width}x{height} (W x H) image; "
                "boxes are pixels of the original image with 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H"
            )
        out.append((x0, y0, x1, y1))
    return tuple(out)


def load_manifest(path: str | Path, require_boxes: bool = False) -> tuple[list[Sample], list[BadRow]]:
    """Read a JSONL manifest, keeping the good rows and reporting the bad ones.

    A row is skipped, with a :class:`BadRow`, when: its line is not valid
    UTF-8 JSON or not a JSON object; ``id`` is not a str/int or repeats an
    earlier id; ``question`` is missing or blank; ``answers`` is missing,
    empty, or holds a non-string or blank answer; the image file does not exist
    or its header cannot be read; ``boxes`` is not a list of four finite numbers
    each, has ``x0 >= x1`` or ``y0 >= y1``, or leaves the image bounds (checked
    against the image size from the file header); or, with
    ``require_boxes=True``, ``boxes`` is missing or empty.

    Args:
        path: the ``.jsonl`` manifest.
        require_boxes: also reject rows without evidence boxes (for profiling).

    Returns:
        ``(samples, bad_rows)`` in file order.

    Raises:
        FileNotFoundError: when ``path`` is not an existing file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"load_manifest: manifest {path} does not exist or is not a file; "
            "write one with vea_engine.converters.convert_* or vea_engine.synthetic.write_dataset."
        )
    root = path.resolve().parent
    samples: list[Sample] = []
    bad: list[BadRow] = []
    first_line_of_id: dict[str, int] = {}
    for line_no, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise _RowError(f"line is not valid UTF-8: {exc}") from exc
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _RowError(f"invalid JSON: {exc.msg} (column {exc.colno})") from exc
            if not isinstance(row, dict):
                raise _RowError(f"expected a JSON object, got {type(row).__name__}")
            sample_id = _parse_id(row, line_no)
            if sample_id in first_line_of_id:
                raise _RowError(f"duplicate id {sample_id!r} (first used on line {first_line_of_id[sample_id]})")
            question = _parse_question(row)
            answers = _parse_answers(row)
            image, size = _resolve_image(row, root)
            boxes = _parse_boxes(row, size, require_boxes)
        except _RowError as exc:
            bad.append(BadRow(line=line_no, reason=str(exc)))
            continue
        first_line_of_id[sample_id] = line_no
        samples.append(Sample(sample_id, image, question, answers, boxes, size))
    if bad:
        logger.warning(
            "load_manifest: skipped %d of %d rows in %s; first: line %d: %s",
            len(bad), len(bad) + len(samples), path, bad[0].line, bad[0].reason,
        )  # fmt: skip
    return samples, bad


def load_good_samples(path: str | Path, limit: int | None = None, require_boxes: bool = False) -> list[Sample]:
    """The good rows of a manifest, for a long run: bad rows are logged (``path:line: reason``) and skipped.

    Args:
        path: the JSONL manifest.
        limit: keep the first ``limit`` good rows (None = all).
        require_boxes: rows without evidence boxes count as bad (profiling).

    Raises:
        ValueError: the manifest is missing, ``limit < 1``, or no row is usable.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}.")
    try:
        samples, bad = load_manifest(path, require_boxes=require_boxes)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from error
    for row in bad:
        logger.warning("%s:%d: skipped: %s", path, row.line, row.reason)
    if bad:
        logger.warning("%s: %d bad row(s) skipped, %d good", path, len(bad), len(samples))
    if not samples:
        what = "rows with evidence boxes" if require_boxes else "rows"
        raise ValueError(f"{path}: no usable {what}; see the warnings above.")
    return samples[:limit] if limit else samples
