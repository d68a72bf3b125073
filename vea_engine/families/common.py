"""Helpers shared by the family adapters.

* :func:`size_value` reads a processor size field (dict or ``SizeDict``);
* :func:`processor_pixels_to_uint8` turns the processor's normalised
  ``pixel_values`` back into uint8 pixels, so an adapter renders its canvas with
  the processor's own resize instead of re-implementing it;
* :func:`stitch_tiles` lays row-major ``S x S`` tiles back into one image;
* :func:`processor_canvas` runs the image processor on one image and de-normalises
  its output: the canvas of every fixed-size family;
* :func:`encode_chat` encodes chat texts whose template already starts with the
  BOS token without the tokenizer adding a second one (Gemma, InternVL, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import ROUNDING_MODES


def size_value(size: Any, key: str) -> int | None:
    """Read ``key`` from a processor size dict or ``SizeDict``; None if absent."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value is not None else None


def check_rounding(rounding: str) -> str:
    """``rounding`` if it is one of :data:`ROUNDING_MODES`, else a ValueError saying what to pass."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(
            f"rounding must be one of {ROUNDING_MODES}, got {rounding!r}; 'truncate' is the reference code's behaviour."
        )
    return rounding


def processor_pixels_to_uint8(pixels: torch.Tensor, image_processor: Any, rounding: str = "truncate") -> np.ndarray:
    """Undo the processor's rescale + normalise, as the reference code does.

    In float32: ``x * std + mean``, clamp to ``[0, 1]``, times ``1 / rescale_factor``
    (255), then cast to uint8 -- which truncates (``rounding="truncate"``, the
    reference) -- or round to the nearest level (``rounding="round"``).

    Args:
        pixels: ``[..., 3, H, W]`` normalised pixel values from ``image_processor``.
        image_processor: the processor that made them (its mean / std / rescale factor).
        rounding: one of :data:`ROUNDING_MODES`.

    Returns:
        ``[..., H, W, 3]`` uint8.
    """
    check_rounding(rounding)
    ip = image_processor
    values = pixels.detach().to("cpu", torch.float32)
    if getattr(ip, "do_normalize", True):
        mean = torch.tensor(ip.image_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(ip.image_std, dtype=torch.float32).view(3, 1, 1)
        values = values * std + mean
    if getattr(ip, "do_rescale", True):
        values = values.clamp(0, 1) * (1.0 / float(getattr(ip, "rescale_factor", 1 / 255)))
    values = values.clamp(0, 255)
    if rounding == "round":
        values = values.round()
    return values.to(torch.uint8).movedim(-3, -1).contiguous().numpy()


def stitch_tiles(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Row-major tiles ``[rows * cols, C, S, S]`` -> one image ``[C, rows * S, cols * S]``."""
    n, C, S, S2 = tiles.shape
    if n != rows * cols or S != S2:
        raise ValueError(f"expected {rows}x{cols} square tiles, got {tuple(tiles.shape)}")
    return tiles.reshape(rows, cols, C, S, S).permute(2, 0, 3, 1, 4).reshape(C, rows * S, cols * S)


def processor_canvas(image_processor: Any, image: np.ndarray, rounding: str = "truncate", **kwargs: Any) -> np.ndarray:
    """The image processor's own rendering of one ``[H0, W0, 3]`` uint8 image, ``[H, W, 3]`` uint8.

    For processors that return one ``[3, H, W]`` image per input (LLaVA-1.5, Gemma 3,
    PaliGemma); ``kwargs`` go to the processor call. The image is passed as PIL,
    so its channel axis is never guessed.
    """
    pixels = image_processor(images=[Image.fromarray(image)], return_tensors="pt", **kwargs)["pixel_values"][0]
    return processor_pixels_to_uint8(pixels, image_processor, rounding)


def encode_chat(processor: Any, texts: list[str], images: list[Image.Image], nested: bool = False) -> Any:
    """``processor(text=texts, images=images)``, left-padded, without a second BOS.

    When every chat text already starts with the tokenizer's BOS token (templates
    that write ``{{ bos_token }}``), the tokenizer is told not to add its own.
    ``nested`` passes the images as one list per text (processors that would
    otherwise read a flat list as several images of the first text).
    """
    tokenizer = processor.tokenizer
    bos = getattr(tokenizer, "bos_token", None)
    extra = {"add_special_tokens": False} if bos and all(t.startswith(bos) for t in texts) else {}
    batch = [[image] for image in images] if nested else images
    return processor(text=texts, images=batch, return_tensors="pt", padding=True, **extra)
