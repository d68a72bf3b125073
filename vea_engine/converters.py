"""Converters from public dataset annotations to the manifest format of :mod:`vea_engine.data`.

:func:`convert_textvqa` (TextVQA), :func:`convert_docvqa` (DocVQA / InfographicVQA)
and :func:`convert_visual_cot` (Visual-CoT, with evidence boxes) each read one
annotation file and write a JSONL manifest whose image paths are relative to the
manifest's folder. They check the annotation structure only; image files and box
validity are checked when the manifest is loaded (:func:`vea_engine.data.load_manifest`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["convert_textvqa", "convert_docvqa", "convert_visual_cot"]

logger = logging.getLogger(__name__)


def _read_json(json_path: str | Path, fn: str) -> Any:
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"{fn}: annotation file {json_path} does not exist.")
    text = json_path.read_text(encoding="utf-8-sig")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{fn}: {json_path} is not valid JSON ({exc.msg}, line {exc.lineno}).") from exc


def _check_dir(directory: str | Path, fn: str, what: str) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{fn}: {what} {directory} is not an existing folder; point it at the dataset's images."
        )
    return directory


def _manifest_image_path(image: Path, out_dir: Path) -> str:
    """Path written to the manifest: relative to the manifest's folder when possible."""
    try:
        return Path(os.path.relpath(image.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # e.g. another drive on Windows
        return image.resolve().as_posix()


def _data_records(payload: Any, fn: str, json_path: str | Path) -> list:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        keys = f" with keys {sorted(payload)[:8]}" if isinstance(payload, dict) else ""
        raise ValueError(
            f"{fn}: {json_path} should hold an object with a 'data' list of question records, "
            f"got a {type(payload).__name__}{keys}."
        )
    return payload["data"]


def _clean_answers(values: Any) -> list[str]:
    if isinstance(values, str) or (isinstance(values, (int, float)) and not isinstance(values, bool)):
        values = [values]
    if not isinstance(values, list):
        return []
    return [str(v) for v in values if v is not None and str(v).strip()]


def _write_rows(rows: Iterable[dict], out_path: str | Path, fn: str, skipped: int) -> int:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out_path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    if skipped:
        logger.warning("%s: skipped %d records without a question or answers", fn, skipped)
    logger.info("%s: wrote %d rows to %s", fn, count, out_path)
    return count


def convert_textvqa(json_path: str | Path, image_dir: str | Path, out_path: str | Path, image_ext: str = ".jpg") -> int:
    """Convert a TextVQA annotation file to a manifest.

    Input: ``{"data": [{"image_id", "question", "answers": [10 str], "question_id"?}, ...]}``;
    the image of a record is ``image_dir / (image_id + image_ext)``. Records
    without a question or without answers (the test split) are skipped with a
    warning. Image existence is checked later, by :func:`load_manifest`.

    Args:
        json_path: e.g. ``TextVQA_0.5.1_val.json``.
        image_dir: folder of the images (e.g. ``train_images``).
        out_path: manifest to write (image paths relative to its folder).
        image_ext: file extension of the images.

    Returns:
        The number of rows written.
    """
    return _convert_vqa_records(
        json_path, image_dir, out_path, "convert_textvqa", "image_dir", "question_id",
        image_of=lambda record, root: root / f"{record['image_id']}{image_ext}" if "image_id" in record else None,
        fallback_id=lambda record, index: f"{record['image_id']}-{index}",
    )  # fmt: skip


def _convert_vqa_records(
    json_path: str | Path,
    directory: str | Path,
    out_path: str | Path,
    fn: str,
    directory_arg: str,
    id_key: str,
    image_of: Callable[[dict, Path], Path | None],
    fallback_id: Callable[[dict, int], str],
) -> int:
    """The shared loop of the ``{"data": [...]}`` converters: one row per record with a question,
    answers and an image (``image_of`` gives None when the record names none); others are counted as skipped."""
    records = _data_records(_read_json(json_path, fn), fn, json_path)
    root = _check_dir(directory, fn, directory_arg)
    out_dir = Path(out_path).parent
    rows, skipped = [], 0
    for index, record in enumerate(records):
        answers = _clean_answers(record.get("answers")) if isinstance(record, dict) else []
        image = image_of(record, root) if answers else None
        if image is None or not isinstance(record.get("question"), str):
            skipped += 1
            continue
        qid = record.get(id_key)
        rows.append(
            {
                "id": str(qid) if qid is not None else fallback_id(record, index),
                "image": _manifest_image_path(image, out_dir),
                "question": record["question"],
                "answers": answers,
            }
        )
    return _write_rows(rows, out_path, fn, skipped)


def convert_docvqa(json_path: str | Path, image_root: str | Path, out_path: str | Path) -> int:
    """Convert a DocVQA (or InfographicVQA) annotation file to a manifest.

    Input: ``{"data": [{"questionId", "question", "answers": [str], "image": "documents/x.png"}, ...]}``;
    the image of a record is ``image_root / record["image"]``. Records without
    answers (the test split) are skipped with a warning.

    Args:
        json_path: e.g. ``val_v1.0.json``.
        image_root: folder the records' ``image`` paths are relative to.
        out_path: manifest to write (image paths relative to its folder).

    Returns:
        The number of rows written.
    """
    return _convert_vqa_records(
        json_path, image_root, out_path, "convert_docvqa", "image_root", "questionId",
        image_of=lambda record, root: root / record["image"] if isinstance(record.get("image"), str) else None,
        fallback_id=lambda record, index: str(index),
    )  # fmt: skip


def convert_visual_cot(json_path: str | Path, image_root: str | Path, out_path: str | Path) -> int:
    """Convert Visual-CoT style records (with evidence boxes) to a manifest.

    Input: a JSON array -- or JSON Lines -- of
    ``{"question", "answer", "image", "bboxs": [[x0, y0, x1, y1], ...], "possible_answers"?}``.
    Answers are ``possible_answers`` when present, else ``[answer]``; boxes are
    ``bboxs`` (pixels of the original image); the image is
    ``image_root / record["image"]``. Records without a question, answer or image
    are skipped with a warning; box validity is checked by :func:`load_manifest`.

    Args:
        json_path: the annotation file (``.json`` array or ``.jsonl``).
        image_root: folder the records' ``image`` paths are relative to.
        out_path: manifest to write (image paths relative to its folder).

    Returns:
        The number of rows written.
    """
    fn = "convert_visual_cot"
    src = Path(json_path)
    if not src.is_file():
        raise FileNotFoundError(f"{fn}: annotation file {src} does not exist.")
    text = src.read_text(encoding="utf-8-sig").strip()
    try:
        records = json.loads(text) if text else []
    except json.JSONDecodeError:  # not one JSON document: JSON Lines
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{fn}: {src} is neither a JSON array nor JSON Lines ({exc.msg}).") from exc
    if isinstance(records, dict) and "question" in records:
        records = [records]  # JSON Lines with a single record
    if not isinstance(records, list):
        keys = f" with keys {sorted(records)[:8]}" if isinstance(records, dict) else ""
        raise ValueError(
            f"{fn}: {src} should hold a list of records (JSON array or JSON Lines), "
            f"got a {type(records).__name__}{keys}."
        )
    image_root = _check_dir(image_root, fn, "image_root")
    out_dir = Path(out_path).parent
    rows, skipped = [], 0
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            skipped += 1
            continue
        answers = _clean_answers(record.get("possible_answers")) or _clean_answers(record.get("answer"))
        if not answers or not isinstance(record.get("question"), str) or not isinstance(record.get("image"), str):
            skipped += 1
            continue
        row = {
            "id": str(record["id"]) if record.get("id") is not None else str(index),
            "image": _manifest_image_path(image_root / record["image"], out_dir),
            "question": record["question"],
            "answers": answers,
        }
        if record.get("bboxs") is not None:
            row["boxes"] = record["bboxs"]
        rows.append(row)
    return _write_rows(rows, out_path, fn, skipped)
