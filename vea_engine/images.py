"""Image conversions at the engine boundary.

The engine works on ``[H, W, 3]`` uint8 RGB arrays for model inputs and on
``[B, H, W, C]`` float tensors in ``[0, 1]`` (ComfyUI's IMAGE layout) for masks
and blending. Everything a user may pass is converted here, once:

* PIL images of any mode (``L``, ``LA``, ``P``, ``RGBA``, ``I;16``, ``I``, ``F``, ``CMYK``, ``1``);
* numpy arrays ``[H, W]``, ``[H, W, 1|2|3|4]`` of uint8, uint16 or float in ``[0, 1]``;
* torch tensors ``[H, W, C]`` float in ``[0, 1]``.

Transparency is composited over white (what a viewer shows); 16-bit values
are scaled to 8 bits (``round(v / 257)``); grey is replicated to RGB.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image


def _from_pil(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _from_float(_float64(np.asarray(image)).div_(65535.0))
    if image.mode in ("I", "F"):
        values = _float64(np.asarray(image))
        peak = 65535.0 if values.numel() and values.max().item() > 255 else 255.0
        return _from_float(values.div_(peak))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA", "La", "RGBa"):
        return _from_float(_float64(np.asarray(image.convert("RGBA"))).div_(255.0))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _float64(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float64 CPU copy of an array (any dtype and strides) or tensor: the buffer :func:`_from_float` changes."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64, copy=True)
    return torch.from_numpy(np.array(values, dtype=np.float64))


def _from_float(values: torch.Tensor) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 1..4]`` float64 values in [0, 1] -> ``[H, W, 3]`` uint8 (alpha over white).

    Clipped to [0, 1], then ``v * 255`` rounded to the nearest level (ties to even); the product
    of any float32 and 255 is exact in float64. ``values`` (a :func:`_float64` copy) is changed in
    place, so a ``[H, W, 3]`` image needs no other buffer.
    """
    if values.ndim == 2:
        values = values[..., None]
    values = values.clamp_(0.0, 1.0)
    if values.shape[-1] in (2, 4):
        color, alpha = values[..., :-1], values[..., -1:]
        values = color * alpha + (1.0 - alpha)
    levels = values.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)  # [H, W, 1 | 3]
    return np.ascontiguousarray(levels.expand(*levels.shape[:-1], 3).numpy())


def to_rgb_uint8(image: Any, name: str = "image") -> np.ndarray:
    """Convert one image to ``[H, W, 3]`` uint8 RGB (see module docstring for accepted inputs).

    Args:
        image: PIL image, numpy array, torch tensor, or a path to an image file.
        name: what to call the argument in error messages.
    """
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise ValueError(f"{name}: no image file at {os.fspath(image)!r}; check the path.")
        try:
            with Image.open(image) as handle:
                handle.load()
                return to_rgb_uint8(handle, name)
        except OSError as error:
            raise ValueError(f"{name}: {os.fspath(image)!r} is not a readable image ({error}).") from error
    if isinstance(image, Image.Image):
        array = _from_pil(image)
    elif isinstance(image, (np.ndarray, torch.Tensor)):
        shape = tuple(image.shape)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] not in (1, 2, 3, 4)):
            raise ValueError(f"{name}: expected [H, W] or [H, W, C] with C in 1..4 (channels last), got shape {shape}.")
        if image.is_floating_point() if isinstance(image, torch.Tensor) else np.issubdtype(image.dtype, np.floating):
            values = _float64(image)
            if not bool(torch.isfinite(values).all()):
                raise ValueError(f"{name}: image contains NaN or infinite values.")
            array = _from_float(values)
        else:
            array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            if array.dtype == np.uint8:
                rgb = array.ndim == 3 and array.shape[-1] == 3
                array = array if rgb else _from_float(_float64(array).div_(255.0))
            elif array.dtype == np.uint16:
                array = _from_float(_float64(array).div_(65535.0))
            elif array.dtype == np.bool_:
                array = _from_float(_float64(array))
            else:
                raise ValueError(
                    f"{name}: unsupported pixel dtype {array.dtype}; use uint8, uint16 or float in [0, 1]."
                )
    else:
        raise ValueError(f"{name}: expected a PIL image, numpy array, tensor or path, got {type(image).__name__}.")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name}: image is empty ({array.shape[1]}x{array.shape[0]} W x H).")
    return np.ascontiguousarray(array)


def images_to_uint8(images: Any, name: str = "images") -> list[np.ndarray]:
    """A batch (``[B, H, W, C]`` tensor/array, or a list of single images) -> list of ``[H, W, 3]`` uint8."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        return [to_rgb_uint8(images[i], f"{name}[{i}]") for i in range(images.shape[0])]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name}: the batch is empty; give at least one image.")
        return [to_rgb_uint8(image, f"{name}[{i}]") for i, image in enumerate(images)]
    return [to_rgb_uint8(images, name)]


def uint8_to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """Same-size ``[H, W, 3]`` uint8 arrays -> ``[B, H, W, 3]`` float32 in [0, 1]."""
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images in one batch must share a size, got {sorted(shapes)}.")
    return torch.from_numpy(np.stack(arrays)).float() / 255.0


def to_levels(images: torch.Tensor) -> torch.Tensor:
    """Float images in ``[0, 1]`` (any shape, e.g. ``[B, H, W, C]``) -> their 8-bit levels, uint8 (rounded).

    Exact for images that came from uint8 (``level / 255``), such as canvases.
    """
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """``[H, W, 3]`` float in [0, 1] -> PIL RGB (rounded)."""
    return Image.fromarray(to_rgb_uint8(image))
