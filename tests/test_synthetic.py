"""Synthetic evidence-VQA generator: determinism, sizes, and that the evidence box holds the answer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vea_engine.data import load_manifest
from vea_engine.synthetic import SyntheticSample, make_sample, write_dataset

SIZES = [(448, 448), (640, 480), (224, 160), (128, 128)]


def _text_pixel_count(text: str, scale: int) -> int:
    """Pixels of ``text`` in PIL's bitmap font, upscaled ``scale``x (an independent rendering)."""
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    _, _, w, h = font.getbbox(text)
    mask = Image.new("1", (w, h), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=1, font=font)
    return int(np.asarray(mask, dtype=bool).sum()) * scale * scale


def test_same_seed_gives_identical_pixels():
    a, b = make_sample(7), make_sample(7)
    assert a.image.tobytes() == b.image.tobytes()
    assert (a.question, a.answers, a.evidence_box) == (b.question, b.answers, b.evidence_box)
    assert a.evidence_text == b.evidence_text


def test_seed_varies_answer_location_and_field():
    samples = [make_sample(seed) for seed in range(30)]
    assert len({s.answers[0] for s in samples}) >= 25
    assert len({s.evidence_box[:2] for s in samples}) >= 25
    assert len({s.question for s in samples}) >= 4
    assert len({s.image.tobytes() for s in samples}) == 30


@pytest.mark.parametrize("size", SIZES)
def test_sizes_and_box_bounds(size):
    for seed in range(5):
        sample = make_sample(seed, size=size)
        assert isinstance(sample, SyntheticSample)
        assert sample.image.mode == "RGB" and sample.image.size == size
        x0, y0, x1, y1 = sample.evidence_box
        assert all(isinstance(v, int) for v in sample.evidence_box)
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        assert sample.answers[0] in sample.evidence_text
        assert sample.question.endswith("?")


@pytest.mark.parametrize("size", SIZES)
def test_evidence_box_holds_the_answer_text(size):
    scale = max(1, min(size) // 224)
    text_colour = (16 << 16) | (16 << 8) | 16
    for seed in range(8):
        sample = make_sample(seed, size=size)
        rgb = np.asarray(sample.image).astype(np.int64)  # [H, W, 3]
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # [H, W] one int per colour
        x0, y0, x1, y1 = sample.evidence_box
        inside = np.zeros(packed.shape, bool)
        inside[y0:y1, x0:x1] = True
        box, outside = packed[y0:y1, x0:x1], packed[~inside]

        # The box stands out from the page: no pixel in it has the page colour (the image's mode).
        page = np.bincount(packed.ravel()).argmax()
        assert not np.any(box == page)

        # Every text-coloured pixel in the box is a pixel of the rendered evidence text, and none is outside.
        dark = box == text_colour
        assert int(dark.sum()) == _text_pixel_count(sample.evidence_text, scale)
        rows, cols = np.nonzero(dark)
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < box.shape[0] - 1 and cols.max() < box.shape[1] - 1
        assert not np.any(outside == text_colour)

        # The box fill colour (the box's mode) exists nowhere outside the box.
        fill = np.bincount(box.ravel()).argmax()
        assert not np.any(outside == fill)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="too small"):
        make_sample(0, size=(64, 64))
    with pytest.raises(ValueError, match=r"\(W, H\) pair of ints"):
        make_sample(0, size=(448.0, 448))
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        make_sample("0")
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        make_sample(-1)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        write_dataset("unused", 0)


def test_write_dataset_is_byte_identical_and_loads(tmp_path):
    first = write_dataset(tmp_path / "a", 4, seed=3, size=(256, 192))
    second = write_dataset(tmp_path / "b", 4, seed=3, size=(256, 192))
    assert first.name == "manifest.jsonl"
    assert first.read_bytes() == second.read_bytes()
    for i in range(4):
        assert (tmp_path / "a" / "images" / f"{i:05d}.png").read_bytes() == (
            tmp_path / "b" / "images" / f"{i:05d}.png"
        ).read_bytes()

    samples, bad = load_manifest(first, require_boxes=True)
    assert bad == [] and len(samples) == 4
    rows = [json.loads(line) for line in first.read_text(encoding="utf-8").splitlines()]
    for sample, row in zip(samples, rows, strict=True):
        regenerated = make_sample(row["seed"], size=(256, 192))
        assert sample.image_size == (256, 192)
        assert sample.question == regenerated.question
        assert list(sample.answers) == regenerated.answers
        assert sample.boxes == (tuple(float(v) for v in regenerated.evidence_box),)
        with Image.open(sample.image) as image:
            assert image.convert("RGB").tobytes() == regenerated.image.tobytes()

    other = write_dataset(tmp_path / "c", 4, seed=4, size=(256, 192))
    assert other.read_bytes() != first.read_bytes()
