"""Manifest loading (good rows, every bad-row kind with its line number) and dataset converters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vea_engine.converters import convert_docvqa, convert_textvqa, convert_visual_cot
from vea_engine.data import BadRow, Sample, load_manifest


def _png(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 100, 50)).save(path)
    return path


def _write_lines(path: Path, lines: list[str | dict]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rows_load(tmp_path):
    _png(tmp_path / "img" / "a.png", (40, 30))
    absolute = _png(tmp_path / "elsewhere" / "b.png", (64, 48))
    manifest = _write_lines(
        tmp_path / "m.jsonl",
        [
            {"id": "q1", "image": "img/a.png", "question": "What?", "answers": ["x", "y"], "boxes": [[0, 0, 40, 30]]},
            "",  # blank lines are skipped, but still counted
            {"image": str(absolute), "question": "Where?", "answers": ["z"], "extra": {"ignored": True}},
            {"id": 7, "image": "img/a.png", "question": "How?", "answers": ["w"], "boxes": [[1.5, 2.25, 3, 4]]},
            {"id": "q4", "image": "img/a.png", "question": "Why?", "answers": ["v"], "boxes": []},
        ],
    )
    samples, bad = load_manifest(manifest)
    assert bad == []
    assert samples == [
        Sample("q1", (tmp_path / "img" / "a.png").resolve(), "What?", ("x", "y"), ((0.0, 0.0, 40.0, 30.0),), (40, 30)),
        Sample("3", absolute.resolve(), "Where?", ("z",), (), (64, 48)),  # default id = line number
        Sample("7", (tmp_path / "img" / "a.png").resolve(), "How?", ("w",), ((1.5, 2.25, 3.0, 4.0),), (40, 30)),
        Sample("q4", (tmp_path / "img" / "a.png").resolve(), "Why?", ("v",), (), (40, 30)),
    ]
    with pytest.raises(AttributeError):
        samples[0].question = "changed"  # frozen


def test_every_bad_row_kind_is_reported_with_its_line(tmp_path):
    _png(tmp_path / "a.png", (40, 30))
    (tmp_path / "broken.png").write_text("not an image", encoding="utf-8")
    good = {"image": "a.png", "question": "Q?", "answers": ["A"]}
    lines = [
        {**good, "id": "first"},  # 1 good
        '{"image": "a.png", "question": ',  # 2 invalid JSON
        '["a", "list"]',  # 3 not an object
        {**good, "image": "missing.png"},  # 4 image file missing
        {**good, "question": "   "},  # 5 empty question
        {"image": "a.png", "question": "Q?"},  # 6 answers missing
        {**good, "answers": []},  # 7 answers empty
        {**good, "boxes": [[0, 0, 10]]},  # 8 box with three numbers
        {**good, "boxes": [[0, 0, 41, 30]]},  # 9 box outside the 40x30 image
        {**good, "boxes": [[10, 0, 10, 5]]},  # 10 x0 >= x1
        {**good, "id": "first"},  # 11 duplicate id
        {**good, "image": "broken.png"},  # 12 unreadable image
        {**good, "answers": ["ok", " "]},  # 13 blank answer
        {**good, "boxes": [[-1, 0, 5, 5]]},  # 14 negative coordinate
        {**good, "boxes": "0 0 5 5"},  # 15 boxes not a list
        {**good, "boxes": [[0, 0, True, 5]]},  # 16 bool is not a number
        "",  # 17 blank: skipped silently
        {**good, "id": "last"},  # 18 good
    ]
    samples, bad = load_manifest(_write_lines(tmp_path / "m.jsonl", lines))
    assert [s.id for s in samples] == ["first", "last"]
    assert all(isinstance(b, BadRow) for b in bad)
    expected = {
        2: "invalid JSON",
        3: "expected a JSON object, got list",
        4: "image file not found",
        5: "'question' is missing or empty",
        6: "'answers' is missing or empty",
        7: "'answers' is missing or empty",
        8: "must be 4 finite numbers",
        9: "outside the 40x30 (W x H) image",
        10: "x0 >= x1",
        11: "duplicate id 'first' (first used on line 1)",
        12: "cannot read image",
        13: "'answers'[1]",
        14: "outside the 40x30",
        15: "'boxes' must be a list",
        16: "must be 4 finite numbers",
    }
    assert [b.line for b in bad] == list(expected)
    for row in bad:
        assert expected[row.line] in row.reason, (row.line, row.reason)
    assert str(tmp_path / "missing.png") in bad[2].reason


def test_invalid_utf8_line_is_a_bad_row(tmp_path):
    _png(tmp_path / "a.png")
    good = json.dumps({"image": "a.png", "question": "Q?", "answers": ["A"]}).encode()
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(good + b"\n" + b'{"question": "\xff"}\n' + good + b"\n")
    samples, bad = load_manifest(manifest)
    assert [s.id for s in samples] == ["1", "3"]
    assert [(b.line, "UTF-8" in b.reason) for b in bad] == [(2, True)]


def test_require_boxes(tmp_path):
    _png(tmp_path / "a.png")
    good = {"image": "a.png", "question": "Q?", "answers": ["A"]}
    manifest = _write_lines(tmp_path / "m.jsonl", [good, {**good, "boxes": []}, {**good, "boxes": [[1, 2, 3, 4]]}])
    samples, bad = load_manifest(manifest, require_boxes=True)
    assert [s.id for s in samples] == ["3"]
    assert [b.line for b in bad] == [1, 2]
    assert all("require_boxes=True" in b.reason for b in bad)
    samples, bad = load_manifest(manifest)
    assert len(samples) == 3 and bad == []


def test_missing_manifest_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_manifest(tmp_path)


# ---- converters --------------------------------------------------------------------------------
def test_convert_textvqa_round_trip(tmp_path):
    images = tmp_path / "train_images"
    _png(images / "abc.jpg", (50, 40))
    _png(images / "def.jpg", (30, 20))
    source = tmp_path / "TextVQA.json"
    source.write_text(
        json.dumps(
            {
                "dataset_name": "textvqa",
                "data": [
                    {
                        "question_id": 11,
                        "image_id": "abc",
                        "question": "what brand?",
                        "answers": ["nokia"] * 9 + ["Nokia"],
                    },
                    {"question_id": 12, "image_id": "def", "question": "what year?", "answers": ["2011", "", "2011"]},
                    {"question_id": 13, "image_id": "def", "question": "test split?"},  # no answers: skipped
                ],
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out" / "textvqa.jsonl"
    assert convert_textvqa(source, images, out) == 2
    samples, bad = load_manifest(out)
    assert bad == []
    assert [(s.id, s.image, s.question, s.answers, s.image_size) for s in samples] == [
        ("11", (images / "abc.jpg").resolve(), "what brand?", tuple(["nokia"] * 9 + ["Nokia"]), (50, 40)),
        ("12", (images / "def.jpg").resolve(), "what year?", ("2011", "2011"), (30, 20)),  # blank answer dropped
    ]
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["image"] == "../train_images/abc.jpg"


def test_convert_docvqa_round_trip(tmp_path):
    root = tmp_path / "docvqa"
    _png(root / "documents" / "x.png", (80, 100))
    source = tmp_path / "val_v1.0.json"
    source.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "questionId": 5,
                        "question": "What is the date?",
                        "answers": ["1/2/99", "Jan 2"],
                        "image": "documents/x.png",
                    },
                    {"questionId": 6, "question": "Missing image?", "answers": ["a"], "image": "documents/none.png"},
                    {"questionId": 7, "question": "No answers", "image": "documents/x.png"},
                ]
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "docvqa.jsonl"
    assert convert_docvqa(source, root, out) == 2  # the missing image is reported by the loader
    samples, bad = load_manifest(out)
    assert [(s.id, s.answers, s.image_size) for s in samples] == [("5", ("1/2/99", "Jan 2"), (80, 100))]
    assert [(b.line, "image file not found" in b.reason) for b in bad] == [(2, True)]


@pytest.mark.parametrize("as_jsonl", [False, True])
def test_convert_visual_cot_round_trip(tmp_path, as_jsonl):
    root = tmp_path / "viscot"
    _png(root / "textvqa" / "p.jpg", (100, 60))
    records = [
        {
            "question": "what number?",
            "answer": "41",
            "image": "textvqa/p.jpg",
            "bboxs": [[10.5, 5.25, 30, 20], [50, 10, 100, 60]],
        },
        {
            "question": "which?",
            "answer": "x",
            "possible_answers": ["x", "ex"],
            "image": "textvqa/p.jpg",
            "bboxs": [[0, 0, 5, 5]],
        },
        {"question": "too big?", "answer": "y", "image": "textvqa/p.jpg", "bboxs": [[0, 0, 101, 60]]},
        {"question": "no answer", "image": "textvqa/p.jpg", "bboxs": [[0, 0, 5, 5]]},  # skipped
    ]
    source = tmp_path / ("cot.jsonl" if as_jsonl else "cot.json")
    if as_jsonl:
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        source.write_text(json.dumps(records, indent=1), encoding="utf-8")
    out = tmp_path / "cot_manifest.jsonl"
    assert convert_visual_cot(source, root, out) == 3
    samples, bad = load_manifest(out, require_boxes=True)
    assert [(s.id, s.answers, s.boxes) for s in samples] == [
        ("0", ("41",), ((10.5, 5.25, 30.0, 20.0), (50.0, 10.0, 100.0, 60.0))),
        ("1", ("x", "ex"), ((0.0, 0.0, 5.0, 5.0),)),
    ]
    assert [(b.line, "outside the 100x60" in b.reason) for b in bad] == [(3, True)]


def test_converters_fail_early_on_wrong_inputs(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    (tmp_path / "data.json").write_text('{"data": []}', encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        convert_textvqa(tmp_path / "nope.json", images, tmp_path / "o.jsonl")
    with pytest.raises(ValueError, match="'data' list"):
        convert_docvqa(tmp_path / "list.json", images, tmp_path / "o.jsonl")
    with pytest.raises(FileNotFoundError, match="image_dir"):
        convert_textvqa(tmp_path / "data.json", tmp_path / "no_images", tmp_path / "o.jsonl")
    with pytest.raises(ValueError, match="list of records"):
        convert_visual_cot(tmp_path / "data.json", images, tmp_path / "o.jsonl")
    assert convert_textvqa(tmp_path / "data.json", images, tmp_path / "o.jsonl") == 0
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8") == ""
