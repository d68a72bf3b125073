"""Draw the pack's icon, ``icon.png`` at the repository root (the Comfy Registry's ``[tool.comfy] Icon``).

An eye on a dark tile whose iris is an evidence map: a warm glow that fades, by the same
Gaussian falloff VEA smooths with, into the dimmed rest of the picture. 400 x 400 pixels
(the Registry shows square icons of at most 400 x 400), drawn four times larger and
downsampled for smooth edges. Deterministic: the same file every run.

Run: ``.venv/bin/python scripts/make_icon.py``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SIZE = 400  # pixels, square
SCALE = 4  # supersampling factor

BACKGROUND = (24, 28, 38)
DIMMED = (58, 66, 84)  # the picture outside the evidence, dimmed
OUTLINE = (232, 236, 244)
GLOW_INNER = np.array([255, 214, 102], dtype=np.float64)  # evidence = 1
GLOW_OUTER = np.array([226, 92, 48], dtype=np.float64)  # evidence ~ 0.3
PUPIL = (18, 20, 28)


def eye_outline(size: int, grow: float = 0.0) -> list[tuple[float, float]]:
    """The almond outline of the eye, ``grow`` pixels wider all round: two circular arcs meeting
    at the corners, as a polygon."""
    cx, cy, half, sag = size / 2, size / 2, size * 0.40 + grow, size * 0.23 + grow
    radius = (half**2 + sag**2) / (2 * sag)  # the circle through both corners and the lid's apex
    angle = np.arcsin(half / radius)
    upper = [
        (cx + radius * np.sin(t), cy - (radius * np.cos(t) - (radius - sag)))  # y = cy at the corners
        for t in np.linspace(-angle, angle, 200)
    ]
    lower = [(x, 2 * cy - y) for x, y in reversed(upper)]
    return upper + lower


def evidence_glow(size: int, center: tuple[float, float], sigma: float) -> Image.Image:
    """An RGB image of the evidence colours: a Gaussian of ``sigma`` pixels around ``center``,
    min-max normalised, from the dimmed colour (0) through orange to yellow (1)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)  # [H, W]
    evidence = np.exp(-((xx - center[0]) ** 2 + (yy - center[1]) ** 2) / (2 * sigma**2))  # [H, W]
    evidence = (evidence - evidence.min()) / (evidence.max() - evidence.min())
    warm = np.clip((evidence - 0.3) / 0.7, 0.0, 1.0)[..., None]  # [H, W, 1]
    colour = GLOW_OUTER * (1 - warm) + GLOW_INNER * warm  # [H, W, 3]
    base = np.array(DIMMED, dtype=np.float64)
    mix = np.clip(evidence / 0.3, 0.0, 1.0)[..., None]
    rgb = base * (1 - mix) + colour * mix
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def draw_icon(size: int = SIZE, scale: int = SCALE) -> Image.Image:
    """The icon as an RGBA image of ``size`` x ``size`` pixels."""
    big = size * scale
    tile = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    ImageDraw.Draw(tile).rounded_rectangle((0, 0, big - 1, big - 1), radius=big * 0.18, fill=BACKGROUND)

    outline = eye_outline(big)
    ImageDraw.Draw(tile).polygon(eye_outline(big, grow=big * 0.022), fill=OUTLINE)  # the lids' line
    eye_mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(eye_mask).polygon(outline, fill=255)
    tile.paste(Image.new("RGBA", (big, big), DIMMED), (0, 0), eye_mask)

    center = (big * 0.5, big * 0.5)
    iris_r = big * 0.19
    glow = evidence_glow(big, center, sigma=iris_r * 0.55).convert("RGBA")
    iris_mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(iris_mask).ellipse(
        (center[0] - iris_r, center[1] - iris_r, center[0] + iris_r, center[1] + iris_r), fill=255
    )
    iris_mask = Image.fromarray(np.minimum(np.asarray(iris_mask), np.asarray(eye_mask)))
    tile.paste(glow, (0, 0), iris_mask)

    draw = ImageDraw.Draw(tile)
    pupil_r = big * 0.065
    draw.ellipse((center[0] - pupil_r, center[1] - pupil_r, center[0] + pupil_r, center[1] + pupil_r), fill=PUPIL)
    shine = big * 0.022
    sx, sy = center[0] + pupil_r * 0.9, center[1] - pupil_r * 0.9
    draw.ellipse((sx - shine, sy - shine, sx + shine, sy + shine), fill=OUTLINE)
    return tile.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    path = REPO / "icon.png"
    draw_icon().save(path, optimize=True)
    print(f"wrote {path.relative_to(REPO)} ({SIZE} x {SIZE})")


if __name__ == "__main__":
    main()
