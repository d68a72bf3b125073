"""Drawing a :class:`~vea_engine.profiling.LayerProfile`: per-layer scores over the layer index (PIL only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from .profiling import LayerProfile

_SERIES = (("AUROC", "auroc", (200, 40, 40)), ("AP", "ap", (40, 90, 200)), ("NDCG", "ndcg", (40, 150, 70)))
#: Fill of the band behind selected layers.
SELECTED_FILL = (255, 236, 170)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # FreeType build of the bundled font
    except (OSError, TypeError, ValueError, ImportError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def plot_profile(profile: LayerProfile, width: int | None = None, height: int = 420) -> Image.Image:
    """Per-layer AUROC, AP and NDCG as lines over the layer index, selected layers shaded.

    The y axis is fixed to [0, 1] with a dashed chance line at 0.5 (AUROC of a random
    ranking); each selected layer gets a shaded band and a star on its AUROC point.

    Args:
        profile: the profile to draw.
        width: image width in pixels (default grows with the layer count, at least 640).
        height: image height in pixels.

    Returns:
        An RGB PIL image.
    """
    n = profile.num_layers
    width = width or max(640, 120 + 22 * n)
    font, small = _font(14), _font(11)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, 20, 56, 58
    x0, x1, y0, y1 = left, width - right, top, height - bottom  # plot area
    step = (x1 - x0) / n

    def px(layer: float) -> float:
        return x0 + (layer + 0.5) * step

    def py(value: float) -> float:
        return y1 - value * (y1 - y0)

    for layer in profile.layers:  # selected bands first, under everything
        draw.rectangle((x0 + layer * step, y0, x0 + (layer + 1) * step, y1), fill=SELECTED_FILL)
    for tick in range(11):  # grid + y labels
        value = tick / 10
        y = py(value)
        draw.line((x0, y, x1, y), fill=(225, 225, 225) if tick % 5 else (190, 190, 190))
        if tick % 2 == 0:
            label = f"{value:.1f}"
            w, h = _text_size(draw, label, small)
            draw.text((x0 - 6 - w, y - h / 2 - 2), label, fill="black", font=small)
    for xs in range(int(x0), int(x1), 8):  # dashed chance line
        draw.line((xs, py(0.5), min(xs + 4, x1), py(0.5)), fill=(120, 120, 120))
    w, h = _text_size(draw, "chance", small)
    draw.text((x1 - w - 4, py(0.5) - h - 6), "chance", fill=(110, 110, 110), font=small)
    draw.rectangle((x0, y0, x1, y1), outline="black")
    every = max(1, math.ceil(n / ((x1 - x0) / 28)))  # keep x labels from colliding
    for layer in range(n):
        x = px(layer)
        draw.line((x, y1, x, y1 + 4), fill="black")
        if layer % every == 0 or layer in profile.layers:
            label = str(layer)
            w, _ = _text_size(draw, label, small)
            draw.text((x - w / 2, y1 + 6), label, fill=(160, 0, 0) if layer in profile.layers else "black", font=small)
    for _name, attr, colour in _SERIES:
        values = getattr(profile, attr)
        points = [(px(i), py(v)) for i, v in enumerate(values) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3 if attr == "auroc" else 2, joint="curve")
        for x, y in points:
            r = 3 if attr == "auroc" else 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    for layer in profile.layers:  # stars on the selected AUROC points
        value = profile.auroc[layer]
        if math.isfinite(value):
            x, y = px(layer), py(value)
            radii = [8 if k % 2 == 0 else 3.5 for k in range(10)]  # outer / inner points of a 5-point star
            star = [(x + r * math.sin(k * math.pi / 5), y - r * math.cos(k * math.pi / 5)) for k, r in enumerate(radii)]
            draw.polygon(star, fill=(255, 190, 0), outline=(120, 60, 0))
    # Axis titles, title, legend.
    label = "decoder layer (0-based); shaded = selected"
    w, _ = _text_size(draw, label, font)
    draw.text(((x0 + x1) / 2 - w / 2, height - 26), label, fill="black", font=font)
    bx0, by0, bx1, by1 = draw.textbbox((0, 0), "score", font=font)
    axis = Image.new("RGBA", (bx1 - bx0 + 4, by1 - by0 + 4), (255, 255, 255, 0))
    ImageDraw.Draw(axis).text((2 - bx0, 2 - by0), "score", fill="black", font=font)
    axis = axis.rotate(90, expand=True)
    image.paste(axis, (8, int((y0 + y1) / 2 - axis.height / 2)), axis)
    name = Path(profile.model_name).name or profile.model_name
    details = (
        f": layers {', '.join(map(str, profile.layers))}  |  rule {profile.rule}, "
        f"{profile.n_samples} samples ({profile.n_skipped} skipped)"
    )
    while len(name) > 8 and _text_size(draw, name + details, font)[0] > width - x0 - 10:
        name = name[: len(name) - 4] + "..."  # shorten long model names to fit
    draw.text((x0, 10), name + details, fill="black", font=font)
    lx = x1
    for name, _, colour in reversed(_SERIES):
        w, h = _text_size(draw, name, small)
        lx -= w + 6
        draw.text((lx, 44 - h), name, fill=colour, font=small)
        lx -= 18
        draw.line((lx, 44 - h / 2, lx + 14, 44 - h / 2), fill=colour, width=3)
        lx -= 10
    return image
