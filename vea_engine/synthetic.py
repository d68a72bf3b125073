"""Deterministic synthetic evidence-VQA samples for tests and demos.

Each sample is a document-like picture: a light page, a dark header bar,
grey distractor text lines (labels with numbers) and muted outline shapes,
plus exactly ONE small coloured box holding the answer-bearing text, e.g.
``CODE: 4821``, and the question that asks for it (``What is the code?``).
The box's pixel rectangle is the ground-truth evidence, so the samples can
drive layer profiling and attribution checks without any download.

Everything is drawn with PIL's built-in bitmap font
(:func:`PIL.ImageFont.load_default_imagefont`, no font file, no FreeType),
no anti-aliasing and integer nearest-neighbour upscaling, from
:class:`random.Random` seeded by ``seed``: the same seed and size give the
same pixels on every machine.

Invariants (checked by the tests):

* the evidence fill colour appears nowhere outside the evidence box;
* no distractor overlaps the evidence box (a margin is kept around it) or
  another distractor;
* no distractor contains the answer string.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["SyntheticSample", "make_sample", "write_dataset", "DEFAULT_SIZE"]

logger = logging.getLogger(__name__)

#: Default image size ``(W, H)`` in pixels.
DEFAULT_SIZE: tuple[int, int] = (448, 448)
_MIN_SIDE = 128

#: (label drawn in the box, question, answer pattern: "9" = digit, "A" = capital letter)
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("CODE", "What is the code?", "9999"),
    ("ROOM", "What is the room number?", "A999"),
    ("PIN", "What is the PIN?", "999999"),
    ("SERIAL", "What is the serial number?", "AA9999"),
    ("GATE", "What is the gate?", "A99"),
)
#: Saturated fills reserved for the evidence box (never used by distractors).
_EVIDENCE_FILLS: tuple[tuple[int, int, int], ...] = (
    (255, 214, 64),  # yellow
    (120, 220, 255),  # cyan
    (255, 150, 190),  # pink
    (150, 235, 120),  # green
    (255, 170, 90),  # orange
)
_TEXT_COLOUR = (16, 16, 16)
#: Words for distractor lines; none is an evidence label.
_DISTRACTOR_WORDS = ("DATE", "REF", "LOT", "QTY", "UNIT", "PAGE", "TEL", "NOTE", "ITEM", "SHIP", "DEPT", "BATCH")
_TITLES = ("INVOICE", "NOTICE", "FORM", "RECEIPT", "REPORT", "MEMO")
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I / O: never confused with 1 / 0


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic evidence-VQA sample.

    Attributes:
        image: RGB picture of size ``(W, H)``.
        question: e.g. ``"What is the code?"``.
        answers: the acceptable answers, e.g. ``["4821"]``.
        evidence_box: ``(x0, y0, x1, y1)`` pixel ints, ``x1``/``y1`` exclusive
            (``image.crop(evidence_box)`` is the coloured box with its border).
        evidence_text: the full text drawn in the box, e.g. ``"CODE: 4821"``.
    """

    image: Image.Image
    question: str
    answers: list[str]
    evidence_box: tuple[int, int, int, int]
    evidence_text: str


def _check_size(size) -> tuple[int, int]:
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    )
    if not ok:
        raise ValueError(f"synthetic: size must be a (W, H) pair of ints, got {size!r}.")
    w, h = size
    if w < _MIN_SIDE or h < _MIN_SIDE:
        raise ValueError(f"synthetic: size {w}x{h} is too small; use at least {_MIN_SIDE}x{_MIN_SIDE} pixels.")
    return int(w), int(h)


def _fill_pattern(rng: random.Random, pattern: str) -> str:
    return "".join(rng.choice("0123456789") if c == "9" else rng.choice(_LETTERS) for c in pattern)


def _bitmap_font() -> ImageFont.ImageFont:
    """PIL's built-in bitmap font (Pillow >= 10.1 returns FreeType from ``load_default``)."""
    loader = getattr(ImageFont, "load_default_imagefont", None)
    return loader() if loader is not None else ImageFont.load_default()


def _text_mask(text: str, scale: int) -> Image.Image:
    """Binary ``L`` mask (0 / 255) of ``text`` in the bitmap font, upscaled ``scale``x, nearest."""
    font = _bitmap_font()
    x0, y0, x1, y1 = font.getbbox(text)
    mask = Image.new("L", (max(1, x1), max(1, y1)), 0)
    draw = ImageDraw.Draw(mask)
    draw.fontmode = "1"
    draw.text((0, 0), text, fill=255, font=font)
    if scale > 1:
        mask = mask.resize((mask.width * scale, mask.height * scale), Image.NEAREST)
    return mask


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grow(box: tuple[int, int, int, int], margin: int) -> tuple[int, int, int, int]:
    return (box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin)


def make_sample(seed: int, size: tuple[int, int] = DEFAULT_SIZE) -> SyntheticSample:
    """Render one synthetic document with a single answer-bearing box.

    The field (code, room, PIN, serial, gate), the answer, the box colour and
    position, the page colour and the distractors all vary with ``seed``.
    Text is drawn at ``scale = max(1, min(W, H) // 224)`` times the bitmap
    font's 6x11-pixel glyphs.

    Args:
        seed: int >= 0 (``random.Random`` would map -s to s); same seed and size ->
            byte-identical image.
        size: ``(W, H)`` in pixels, each at least 128.

    Returns:
        A :class:`SyntheticSample`.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"make_sample: seed must be an int >= 0, got {seed!r}.")
    width, height = _check_size(size)
    rng = random.Random(seed)
    scale = max(1, min(width, height) // 224)

    page = tuple(rng.randint(232, 250) for _ in range(3))
    image = Image.new("RGB", (width, height), page)
    draw = ImageDraw.Draw(image)

    # Header bar with a title (part of the layout, never evidence).
    header_h = max(14 * scale, height // 12)
    draw.rectangle((0, 0, width - 1, header_h - 1), fill=tuple(rng.randint(40, 80) for _ in range(3)))
    title = _text_mask(f"{rng.choice(_TITLES)} {rng.randint(10, 99)}", scale)
    image.paste((235, 235, 235), (4 * scale, (header_h - title.height) // 2), title)

    # The evidence box.
    label, question, pattern = rng.choice(_FIELDS)
    answer = _fill_pattern(rng, pattern)
    text = f"{label}: {answer}"
    mask = _text_mask(text, scale)
    pad, border = 3 * scale, scale
    box_w, box_h = mask.width + 2 * (pad + border), mask.height + 2 * (pad + border)
    margin = 4 * scale
    x_lo, x_hi = margin, width - margin - box_w
    y_lo, y_hi = header_h + margin, height - margin - box_h
    if x_hi < x_lo or y_hi < y_lo:
        raise ValueError(
            f"make_sample: size {width}x{height} cannot hold the {box_w}x{box_h} evidence box for {text!r}; "
            "use a larger size."
        )
    ex0, ey0 = rng.randint(x_lo, x_hi), rng.randint(y_lo, y_hi)
    evidence_box = (ex0, ey0, ex0 + box_w, ey0 + box_h)
    fill = rng.choice(_EVIDENCE_FILLS)
    edge = tuple(max(0, c - 90) for c in fill)

    # Distractors first (they never overlap the grown evidence box), evidence on top.
    occupied = [_grow(evidence_box, 2 * margin)]  # distractors keep clear of these and of each other
    for _ in range(rng.randint(8, 14)):
        kind = rng.random()
        for _attempt in range(30):
            if kind < 0.7:  # a grey text line, e.g. "REF: 3307"
                word = rng.choice(_DISTRACTOR_WORDS)
                number = str(rng.randint(0, 99999))
                if answer in number:
                    continue
                line = _text_mask(f"{word}: {number}", scale)
                x = rng.randint(0, max(0, width - line.width))
                y = rng.randint(header_h, max(header_h, height - line.height))
                footprint = (x, y, x + line.width, y + line.height)
                if footprint[2] > width or footprint[3] > height or any(_overlaps(footprint, o) for o in occupied):
                    continue
                occupied.append(_grow(footprint, scale))
                grey = rng.randint(80, 150)
                image.paste((grey, grey, grey), (x, y), line)
            else:  # a muted outline rectangle or ellipse
                w = rng.randint(12 * scale, max(12 * scale, width // 4))
                h = rng.randint(8 * scale, max(8 * scale, height // 6))
                x, y = rng.randint(0, max(0, width - w)), rng.randint(header_h, max(header_h, height - h))
                footprint = (x, y, x + w, y + h)
                if footprint[2] > width or footprint[3] > height or any(_overlaps(footprint, o) for o in occupied):
                    continue
                occupied.append(_grow(footprint, scale))
                tone = tuple(rng.randint(150, 200) for _ in range(3))
                shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
                shape((x, y, x + w - 1, y + h - 1), outline=tone, width=scale)
            break

    bx0, by0, bx1, by1 = evidence_box  # PIL rectangles include their last pixel, hence the -1
    draw.rectangle((bx0, by0, bx1 - 1, by1 - 1), fill=edge)
    draw.rectangle((bx0 + border, by0 + border, bx1 - 1 - border, by1 - 1 - border), fill=fill)
    image.paste(_TEXT_COLOUR, (bx0 + border + pad, by0 + border + pad), mask)
    return SyntheticSample(
        image=image, question=question, answers=[answer], evidence_box=evidence_box, evidence_text=text
    )


def write_dataset(out_dir: str | Path, n: int, seed: int = 0, size: tuple[int, int] = DEFAULT_SIZE) -> Path:
    """Write ``n`` synthetic samples as PNGs plus a JSONL manifest.

    Layout: ``out_dir/images/00000.png ...`` and ``out_dir/manifest.jsonl``,
    one row per sample in the format read by :func:`vea_engine.data.load_manifest`:
    ``{"id", "image" (relative), "question", "answers", "boxes": [[x0, y0, x1, y1]],
    "seed"}`` (``seed`` is the per-sample seed for :func:`make_sample`; the
    loader ignores it). Per-sample seeds are drawn from ``random.Random(seed)``,
    so different dataset seeds give unrelated samples. Existing files are
    overwritten.

    Args:
        out_dir: output folder (created if missing).
        n: number of samples, >= 1.
        seed: dataset seed, int >= 0.
        size: ``(W, H)`` of every image.

    Returns:
        Path of the manifest.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"write_dataset: n must be an int >= 1, got {n!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"write_dataset: seed must be an int >= 0, got {seed!r}.")
    _check_size(size)
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sample_seed = rng.getrandbits(32)
        sample = make_sample(sample_seed, size)
        name = f"{i:05d}.png"
        sample.image.save(image_dir / name, format="PNG")
        rows.append(
            {
                "id": f"synthetic-{seed}-{i:05d}",
                "image": f"images/{name}",
                "question": sample.question,
                "answers": sample.answers,
                "boxes": [list(sample.evidence_box)],
                "seed": sample_seed,
            }
        )
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    logger.info("wrote %d synthetic samples to %s", n, manifest)
    return manifest
