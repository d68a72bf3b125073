"""Mask pipeline speed vs the scipy/numpy reference at 1024x1024, sigma = 0.5 (same result).

Run: ``python bench/bench_mask.py [--size 1024] [--repeats 5] [--sigmas 0.5,1.0]``. Prints
the time of the reference (denoise, paint, scipy ``gaussian_filter``, normalise, blend
in numpy) and of ours (torch, FFT Gaussian), their ratio and the largest difference;
then the smoothing step alone: ours (float64 FFT, rounded to float32 per axis, as
scipy does) vs the previous float32 FFT vs scipy, with each one's largest difference
from scipy before and after min-max (the evidence map).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from vea_engine.attribution import AttentionMap, evidence_map
from vea_engine.geometry import ImageGeometry
from vea_engine.mask import blend, folded_gaussian, gaussian_smooth, minmax_normalize, paint, resolve_sigma


def reference(grid: np.ndarray, patch: int, image: np.ndarray, lam=10.0, sigma=0.5, alpha=0.5) -> np.ndarray:
    h, w = grid.shape
    padded = np.pad(grid, 1, mode="edge")
    offs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    neigh = np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in offs])
    grid = np.where(grid > lam * neigh.max(0), neigh.mean(0), grid).astype(np.float32)
    canvas = np.zeros((h * patch, w * patch), np.float32)
    for i in range(h):
        for j in range(w):
            canvas[i * patch : (i + 1) * patch, j * patch : (j + 1) * patch] = grid[i, j]
    canvas = gaussian_filter(canvas, sigma * min(canvas.shape))
    lo, hi = canvas.min(), canvas.max()
    emap = (canvas - lo) / (hi - lo)
    return np.clip(image * (alpha + (1 - alpha) * emap)[..., None], 0, 1)


def smooth_float32(pixel_map: torch.Tensor, sigma: float) -> torch.Tensor:
    """The previous ``gaussian_smooth``: the same FFT, all in float32 (kept here to measure the change)."""
    sigma_px = resolve_sigma(sigma, tuple(pixel_map.shape[1:]))

    def axis(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        spectrum = torch.fft.rfft(torch.from_numpy(folded_gaussian(n, sigma_px))).real
        shape = [1] * x.ndim
        shape[dim] = -1
        extended = torch.cat([x, x.flip(dim)], dim)
        product = torch.fft.rfft(extended, dim=dim) * spectrum.to(torch.float32).view(shape)
        out = torch.fft.irfft(product, n=2 * n, dim=dim)
        return out.narrow(dim, 0, n)

    return axis(axis(pixel_map.to(torch.float32), 1), 2)


def minmax_ref(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo)).astype(np.float32)


def bench_smoothing(grid: np.ndarray, patch: int, sigmas: list[float], repeats: int) -> None:
    """The smoothing step alone at full size: float64 (now) vs float32 (before) vs scipy."""
    pixel_map = paint(torch.from_numpy(grid)[None], (grid.shape[0] * patch, grid.shape[1] * patch))  # [1, H, W]
    size = f"{pixel_map.shape[2]}x{pixel_map.shape[1]}"
    print(f"smoothing alone, {size} painted map (scipy timed once, ours best of {repeats}):")
    for sigma in sigmas:
        sigma_px = resolve_sigma(sigma, tuple(pixel_map.shape[1:]))
        gaussian_smooth(pixel_map, sigma), smooth_float32(pixel_map, sigma)  # warm-up
        t_64 = best_of(lambda sigma=sigma: gaussian_smooth(pixel_map, sigma), repeats)
        t_32 = best_of(lambda sigma=sigma: smooth_float32(pixel_map, sigma), repeats)
        start = time.perf_counter()
        ref = gaussian_filter(pixel_map[0].numpy(), sigma_px)
        t_scipy = time.perf_counter() - start
        ref_norm = minmax_ref(ref)
        print(f"  sigma={sigma} ({sigma_px:.0f}px)")
        for name, t, out in (
            ("ours, float64 FFT (now)", t_64, gaussian_smooth(pixel_map, sigma)),
            ("float32 FFT (before)", t_32, smooth_float32(pixel_map, sigma)),
        ):
            d_smooth = np.abs(out[0].numpy() - ref).max()
            d_norm = np.abs(minmax_normalize(out)[0].numpy() - ref_norm).max()
            print(
                f"    {name:24s} {t * 1000:8.1f} ms   max|diff| vs scipy: smoothed {d_smooth:.2e}, "
                f"after min-max {d_norm:.2e}"
            )
        print(f"    {'scipy gaussian_filter':24s} {t_scipy * 1000:8.1f} ms")
        print(f"    cost of float64: {t_64 / t_32:.2f}x the float32 path; {t_scipy / t_64:.0f}x faster than scipy")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sigmas", default="0.5,1.0", help="sigmas for the smoothing-alone comparison ('' to skip)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cells = args.size // args.patch
    grid = rng.random((cells, cells)).astype(np.float32)
    image = rng.random((args.size, args.size, 3)).astype(np.float32)
    grid_t, image_t = torch.from_numpy(grid)[None], torch.from_numpy(image)[None]

    hw = (args.size, args.size)
    geometry = ImageGeometry.single_grid(cells, cells, hw, hw, (0, 0, args.size, args.size))
    attention = AttentionMap(grid_t.flatten(1), geometry, image_t, (0,), "random scores", ("?",))

    def ours():  # the engine's own path: denoise, paint, smooth, normalise, then blend
        return blend(image_t, evidence_map(attention))

    ours()  # warm-up (FFT plans)
    t_ref = best_of(lambda: reference(grid, args.patch, image), max(1, args.repeats // 2))
    t_ours = best_of(ours, args.repeats)
    diff = np.abs(ours()[0].numpy() - reference(grid, args.patch, image)).max()
    print(
        f"mask pipeline {args.size}x{args.size}, sigma=0.5*min(H,W)={0.5 * args.size:.0f}px, torch threads={torch.get_num_threads()}"
    )
    print(f"  reference (numpy+scipy): {t_ref * 1000:9.1f} ms")
    print(f"  ours (torch, FFT):       {t_ours * 1000:9.1f} ms")
    print(f"  speed-up reference/ours: {t_ref / t_ours:9.1f}x   (target >= 20x)")
    print(f"  max |difference|:        {diff:.2e}   (target <= 1e-3)")
    sigmas = [float(v) for v in args.sigmas.split(",") if v.strip()]
    if sigmas:
        bench_smoothing(grid, args.patch, sigmas, args.repeats)


if __name__ == "__main__":
    main()
