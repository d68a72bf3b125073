"""Mask stages of VEA as batched torch functions (float32, on any device).

Token scores -> grid -> :func:`denoise` -> :func:`paint` onto the model-input
canvas -> :func:`gaussian_smooth` -> :func:`minmax_normalize` -> :func:`blend` (float
images) or :func:`highlight_uint8` (the reference's uint8 canvas).
Each function is one paper step with the paper's default, takes a batch and
returns a new tensor (inputs are never modified).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import DEFAULTS, MASK_DTYPE, check_rounding


def _check_batch(name: str, x: torch.Tensor, ndim: int, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != ndim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a {ndim}D tensor {what}, got {shape}.")


def denoise(grid: torch.Tensor, lam: float = DEFAULTS.lam) -> torch.Tensor:
    """Replace isolated attention spikes by the mean of their neighbours (paper Eq. 2).

    A cell is a spike when ``value > lam * max(neighbours)`` over its 3x3
    neighbourhood *without* the centre, with edge padding; grids smaller than
    3x3 are returned unchanged.

    Args:
        grid: ``[B, h, w]`` token scores on the token grid.
        lam: spike threshold (> 0); larger values replace fewer cells.

    Returns:
        ``[B, h, w]`` float32.
    """
    _check_batch("denoise", grid, 3, "[B, h, w] of token scores")
    if not lam > 0:
        raise ValueError(f"denoise: lam must be > 0, got {lam}; the paper uses 10.")
    grid = grid.to(MASK_DTYPE)
    _, h, w = grid.shape
    if h < 3 or w < 3:
        return grid.clone()
    padded = F.pad(grid[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # [B, h+2, w+2]
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    neighbours = [padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in offsets]  # 8 x [B, h, w]
    peak = neighbours[0]
    total = neighbours[0]
    for n in neighbours[1:]:  # sequential float32 sum: bit-identical to numpy's axis-0 mean
        peak = torch.maximum(peak, n)
        total = total + n
    mean = total / 8.0
    return torch.where(grid > lam * peak, mean, grid)


def paint(grid: torch.Tensor, canvas_hw: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Paint grid cells onto a pixel canvas, nearest, no interpolation.

    Cell ``(r, c)`` of an ``h x w`` grid covering ``box = (x0, y0, x1, y1)``
    fills pixel ``(y, x)`` when ``r = floor((y - y0) * h / (y1 - y0))`` and
    ``c = floor((x - x0) * w / (x1 - x0))``; for a box that is a whole number
    of patches this is each cell filling its own patch box. Pixels outside
    ``box`` are 0; the part of ``box`` outside the canvas is cut off (a grid may
    show a little more than the canvas, e.g. LLaVA-NeXT's base image).

    Args:
        grid: ``[B, h, w]``.
        canvas_hw: ``(H, W)`` of the model-input image.
        box: integer region the grid covers, in canvas pixels (it may reach past the
            canvas edges); default the whole canvas.

    Returns:
        ``[B, H, W]`` float32.
    """
    _check_batch("paint", grid, 3, "[B, h, w] grid")
    H, W = (int(v) for v in canvas_hw)
    x0, y0, x1, y1 = (int(v) for v in box) if box is not None else (0, 0, W, H)
    if not (x0 < x1 and y0 < y1 and x0 < W and y0 < H and x1 > 0 and y1 > 0):
        raise ValueError(f"paint: box {box} does not overlap the canvas {W}x{H} (W x H).")
    _, h, w = grid.shape
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, H), max(x0, 0), min(x1, W)  # the part of the box on the canvas
    ys = torch.arange(cy0 - y0, cy1 - y0, device=grid.device)  # [cy1 - cy0] pixel offsets in the box
    xs = torch.arange(cx0 - x0, cx1 - x0, device=grid.device)
    rows = torch.div(ys * h, y1 - y0, rounding_mode="floor")
    cols = torch.div(xs * w, x1 - x0, rounding_mode="floor")
    region = grid.to(MASK_DTYPE)[:, rows][:, :, cols]  # [B, cy1 - cy0, cx1 - cx0]
    if (cx0, cy0, cx1, cy1) == (0, 0, W, H):
        return region
    canvas = grid.new_zeros((grid.shape[0], H, W), dtype=MASK_DTYPE)
    canvas[:, cy0:cy1, cx0:cx1] = region
    return canvas


def resolve_sigma(sigma: float, hw: tuple[int, int]) -> float:
    """Pixel sigma: ``sigma * min(H, W)`` when ``0 < sigma <= 1``, ``sigma`` when > 1, 0 when off."""
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be >= 0, got {sigma}; use 0 to disable smoothing, 0.5 is the paper's value.")
    if sigma == 0:
        return 0.0
    return float(sigma) * min(hw) if sigma <= 1 else float(sigma)


def folded_gaussian(n: int, sigma_px: float, truncate: float = 4.0) -> np.ndarray:
    """scipy's truncated 1-D Gaussian folded onto the period ``2n`` of a reflected signal.

    ``reflect`` boundaries (``d c b a | a b c d | d c b a``) make the extended
    signal periodic with period ``2n``, so filtering it equals a *circular*
    convolution of ``[x, flip(x)]`` with the kernel wrapped modulo ``2n`` --
    whatever the kernel radius ``int(truncate * sigma + 0.5)`` (scipy's rule,
    weights normalised to sum 1).

    Returns:
        ``[2n]`` float64 weights, symmetric (``w[d] == w[-d mod 2n]``).
    """
    radius = int(truncate * sigma_px + 0.5)
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / sigma_px**2 * taps.astype(np.float64) ** 2)
    weights /= weights.sum()
    return np.bincount(taps % (2 * n), weights=weights, minlength=2 * n)


#: Precision of the FFT inside :func:`gaussian_smooth`; each axis is rounded to float32 afterwards.
_SMOOTH_DTYPE = torch.float64


def _filter_axis(x: torch.Tensor, sigma_px: float, dim: int) -> torch.Tensor:
    """Gaussian along ``dim`` with reflect boundaries via an FFT of length ``2n``; float64 in and out."""
    n = x.shape[dim]
    spectrum = torch.fft.rfft(torch.from_numpy(folded_gaussian(n, sigma_px))).real  # [n + 1] float64, kernel symmetric
    shape = [1] * x.ndim
    shape[dim] = -1
    extended = torch.cat([x, x.flip(dim)], dim)  # one period of the reflected signal
    out = torch.fft.irfft(
        torch.fft.rfft(extended, dim=dim) * spectrum.to(x.device, _SMOOTH_DTYPE).view(shape), n=2 * n, dim=dim
    )
    return out.narrow(dim, 0, n)


def _smooth_axis(x: torch.Tensor, sigma_px: float, dim: int) -> torch.Tensor:
    """Gaussian along ``dim`` of a float32 ``x``: the convolution in float64, the result rounded to
    float32 -- what scipy does per axis for a float32 input (it filters in double and stores each
    axis into a float32 array)."""
    return _filter_axis(x.to(_SMOOTH_DTYPE), sigma_px, dim).to(MASK_DTYPE)


def _runs(pixel_map: torch.Tensor, dim: int) -> torch.Tensor:
    """Start index of each run of equal consecutive slices along ``dim`` (1: rows, 2: columns) of
    ``[B, H, W]``, shared by the batch: ``[R]`` long. A painted token grid has one run per cell."""
    n = pixel_map.shape[dim]
    same = (pixel_map.narrow(dim, 1, n - 1) == pixel_map.narrow(dim, 0, n - 1)).all(dim=0)  # [H-1, W] or [H, W-1]
    same = same.all(dim=1 if dim == 1 else 0)  # [n - 1]: slice i + 1 equals slice i
    return torch.cat([torch.zeros(1, dtype=torch.long, device=pixel_map.device), torch.nonzero(~same)[:, 0] + 1])


def _run_operator(n: int, starts: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """The Gaussian (reflect) applied to the indicator of each run: ``[n, R]`` float64, so that
    filtering a signal that is constant on each run is ``operator @ run_values``."""
    run_of = torch.bucketize(torch.arange(n, device=starts.device), starts, right=True) - 1  # [n] run of each index
    indicator = torch.zeros(n, starts.numel(), dtype=_SMOOTH_DTYPE, device=starts.device)
    indicator[torch.arange(n, device=starts.device), run_of] = 1.0
    return _filter_axis(indicator, sigma_px, 0)


#: Run compression pays while each axis has at most this fraction of its length in runs.
_MAX_RUN_FRACTION = 0.25


def _smooth_runs(pixel_map: torch.Tensor, sigma_px: float) -> torch.Tensor | None:
    """:func:`gaussian_smooth` of a map made of constant blocks (a painted token grid), or None when
    the map is not blocky enough for this to pay.

    Along each axis the map takes one value per run of equal rows / columns, so each 1-D Gaussian
    is a matrix with one column per run (the filtered run indicators, :func:`_run_operator`): the
    H pass is ``[H, R_h] @ [R_h, R_w]`` per image, rounded to float32 as scipy stores it, and the W
    pass ``[H, R_w] @ [R_w, W]``. About ``H * W * R_w`` operations instead of FFTs over every row
    and column; the same float64 sums in another order, then the same float32 rounding per axis.
    """
    _, H, W = pixel_map.shape
    if H < 2 or W < 2:
        return None
    rows, cols = _runs(pixel_map, 1), _runs(pixel_map, 2)
    if rows.numel() > _MAX_RUN_FRACTION * H or cols.numel() > _MAX_RUN_FRACTION * W:
        return None
    core = pixel_map[:, rows][:, :, cols].to(_SMOOTH_DTYPE)  # [B, R_h, R_w]: one value per block
    along_h = (_run_operator(H, rows, sigma_px) @ core).to(MASK_DTYPE)  # [B, H, R_w]: the H pass, per column run
    return (along_h.to(_SMOOTH_DTYPE) @ _run_operator(W, cols, sigma_px).T).to(MASK_DTYPE)  # [B, H, W]


def gaussian_smooth(pixel_map: torch.Tensor, sigma: float = DEFAULTS.sigma) -> torch.Tensor:
    """Isotropic Gaussian blur with ``reflect`` boundaries (paper Eq. 3).

    Equals ``scipy.ndimage.gaussian_filter(map, sigma_px)`` on a float32 map
    (scipy's defaults: ``mode="reflect"``, ``truncate=4``, as the reference code
    uses) but costs ``O(B * H * W * log(H * W))`` whatever the sigma: each axis
    is one circular convolution of the reflected signal, done by FFT (see
    :func:`folded_gaussian`). A map of constant blocks (a painted token grid,
    what the pipeline smooths) is filtered one block row / column at a time
    instead (:func:`_smooth_runs`): ~20x faster at 1,600 tokens on 1120 x 1120.

    Precision: like scipy with a float32 input, each axis (H first, then W) is
    filtered in float64 and rounded to float32 before the next, so the result
    is in practice bit-identical to scipy -- which matters at large sigma, where
    the smoothed map is nearly flat and :func:`minmax_normalize` amplifies any
    round-off (an all-float32 FFT differed from scipy by ~1e-3 to 1e-2 after
    min-max at ``sigma = 1.0``). Costs ~1.5-2.5x the float32 FFT on CPU and
    twice its memory for the intermediate. float64 runs on CPU and CUDA; on
    Apple MPS, which has no float64, the FFT runs on the CPU and the result is
    moved back.

    Args:
        pixel_map: ``[B, H, W]``.
        sigma: ``<= 1`` relative to the shorter side, ``> 1`` absolute pixels, ``0`` off.

    Returns:
        ``[B, H, W]`` float32 on the input's device.
    """
    _check_batch("gaussian_smooth", pixel_map, 3, "[B, H, W] map")
    pixel_map = pixel_map.to(MASK_DTYPE)
    _, H, W = pixel_map.shape
    sigma_px = resolve_sigma(sigma, (H, W))
    if sigma_px == 0:
        return pixel_map.clone()
    device = pixel_map.device
    work = pixel_map.cpu() if device.type == "mps" else pixel_map  # MPS has no float64
    out = _smooth_runs(work, sigma_px)
    if out is None:
        out = _smooth_axis(_smooth_axis(work, sigma_px, 1), sigma_px, 2)
    return out.to(device)


def minmax_normalize(pixel_map: torch.Tensor) -> torch.Tensor:
    """Rescale each map of the batch to ``[0, 1]``; a constant map becomes zeros.

    Bit-identical to the reference's numpy ``lo, hi = float(m.min()), float(m.max())``;
    ``((m - lo) / (hi - lo)).astype(float32)`` on a float32 map (NumPy 2 scalar
    rules): ``m - lo`` in float32, the span ``hi - lo`` in float64 then rounded
    to float32, the division in float32.

    Args:
        pixel_map: ``[B, H, W]``.

    Returns:
        ``[B, H, W]`` float32.
    """
    _check_batch("minmax_normalize", pixel_map, 3, "[B, H, W] map")
    pixel_map = pixel_map.to(MASK_DTYPE)
    flat = pixel_map.flatten(1)  # [B, H*W]
    lo = flat.min(dim=1).values[:, None, None]  # [B, 1, 1]
    hi = flat.max(dim=1).values[:, None, None]
    # The span in float64, as Python's ``hi - lo``, then rounded to float32 (MPS has no float64: via the CPU).
    # It stays a [B, 1, 1] tensor: a true division, never a multiplication by a reciprocal.
    wide = torch.device("cpu") if hi.device.type == "mps" else hi.device
    span = (hi.to(wide, torch.float64) - lo.to(wide, torch.float64)).to(pixel_map.device, MASK_DTYPE)
    positive = span > 0
    safe = torch.where(positive, span, torch.ones_like(span))
    return torch.where(positive, (pixel_map - lo) / safe, torch.zeros_like(pixel_map))


def _check_image_and_mask(name: str, images: torch.Tensor, mask: torch.Tensor, alpha: float, what: str) -> None:
    """Shared checks of :func:`blend` and :func:`highlight_uint8`: layouts, sizes, batch, alpha."""
    _check_batch(name, images, 4, what)
    _check_batch(name, mask, 3, "[B, H, W] mask")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name}: alpha must be in [0, 1], got {alpha}; 0.5 is the paper's value.")
    if mask.shape[1:] != images.shape[1:3]:
        raise ValueError(
            f"{name}: mask is {mask.shape[2]}x{mask.shape[1]} but the image is {images.shape[2]}x{images.shape[1]} "
            "(W x H); blend the mask onto the image it was made for, or align it first (VEA Align Mask / "
            "vea_engine.geometry.remap_mask)."
        )
    if mask.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"{name}: {mask.shape[0]} masks for {images.shape[0]} images; give one mask or one per image.")


def blend(images: torch.Tensor, mask: torch.Tensor, alpha: float = DEFAULTS.alpha) -> torch.Tensor:
    """Dim everything but the evidence (paper Eq. 4): ``clip(img * (alpha + (1 - alpha) * E), 0, 1)``.

    Float in, float out (ComfyUI IMAGE); for the reference's quantised 0..255
    canvas use :func:`highlight_uint8`.

    Args:
        images: ``[B, H, W, C]`` float in ``[0, 1]`` (ComfyUI IMAGE layout).
        mask: ``[B, H, W]`` or ``[1, H, W]`` evidence in ``[0, 1]``.
        alpha: brightness kept where the evidence is 0, in ``[0, 1]``.

    Returns:
        ``[B, H, W, C]`` float32 in ``[0, 1]``.
    """
    _check_image_and_mask("blend", images, mask, alpha, "[B, H, W, C] image")
    gain = alpha + (1.0 - alpha) * mask.to(images.device, MASK_DTYPE)[..., None]  # [B, H, W, 1]
    return (images.to(MASK_DTYPE) * gain).clamp(0.0, 1.0)


def highlight_uint8(
    canvas: torch.Tensor, mask: torch.Tensor, alpha: float = DEFAULTS.alpha, rounding: str = "truncate"
) -> torch.Tensor:
    """Paper Eq. 4 on a uint8 canvas, bit-identical to the reference code.

    The reference computes, with ``evidence_map`` float32 and ``alpha`` a Python float::

        arr = np.asarray(image, np.float32)
        gain = (alpha + (1.0 - alpha) * evidence_map)[..., None]  # float32
        np.clip(arr * gain, 0, 255).astype(np.uint8)               # truncation

    This does the same float32 operations in the same order, so with
    ``rounding="truncate"`` (the default) the result is equal bit for bit.
    ``rounding="round"`` (opt-in, not the paper) rounds to the nearest grey
    level, ties to even (``torch.round``), instead of truncating.

    Args:
        canvas: ``[B, H, W, 3]`` uint8, the model-input rendering of the image.
        mask: ``[B, H, W]`` or ``[1, H, W]`` evidence in ``[0, 1]`` (made float32,
            as the reference's map); NaN or inf is rejected.
        alpha: brightness kept where the evidence is 0, in ``[0, 1]``.
        rounding: one of :data:`ROUNDING_MODES`.

    Returns:
        ``[B, H, W, 3]`` uint8 on the canvas's device.
    """
    _check_image_and_mask("highlight_uint8", canvas, mask, alpha, "[B, H, W, 3] uint8 canvas")
    if canvas.dtype != torch.uint8:
        raise ValueError(
            f"highlight_uint8: canvas must be uint8 (0..255), got {canvas.dtype}; for a float image in [0, 1] use "
            "blend(), or convert it first (e.g. (image * 255).to(torch.uint8), which truncates like the reference)."
        )
    check_rounding(rounding, "highlight_uint8")
    evidence = mask.to(canvas.device, MASK_DTYPE)  # [B|1, H, W]
    if not torch.isfinite(evidence).all():
        raise ValueError(
            "highlight_uint8: the mask contains NaN or inf; give a finite evidence map in [0, 1] "
            "(e.g. the output of minmax_normalize)."
        )
    # float32 scalars rounded from Python doubles, as NumPy 2 does with weak Python scalars; mul then add
    # (two kernels, never a fused multiply-add), in the reference's order.
    keep = torch.tensor(1.0 - alpha, dtype=MASK_DTYPE, device=canvas.device)
    floor = torch.tensor(alpha, dtype=MASK_DTYPE, device=canvas.device)
    gain = (evidence * keep + floor)[..., None]  # [B|1, H, W, 1]
    value = (canvas.to(MASK_DTYPE) * gain).clamp(0.0, 255.0)  # [B, H, W, 3]
    if rounding == "round":
        value = torch.round(value)
    return value.to(torch.uint8)  # float -> uint8 truncates toward zero, as numpy's astype


_JET = torch.tensor(
    [[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]]
)


def heatmap(mask: torch.Tensor) -> torch.Tensor:
    """Colour a ``[B, H, W]`` map in ``[0, 1]`` with a jet-like palette -> ``[B, H, W, 3]`` in ``[0, 1]``."""
    _check_batch("heatmap", mask, 3, "[B, H, W] map")
    palette = _JET.to(mask.device)
    pos = mask.to(MASK_DTYPE).clamp(0, 1) * (len(palette) - 1)
    lo = pos.floor().long().clamp(max=len(palette) - 2)
    frac = (pos - lo)[..., None]
    return palette[lo] * (1 - frac) + palette[lo + 1] * frac
