"""Mask pipeline speed vs the scipy/numpy reference at 1024x1024, sigma = 0.5 (same result).

Run: ``python bench/bench_mask.py [--size 1024] [--repeats 5]``. Prints the time of
the reference (denoise, paint, scipy ``gaussian_filter``, normalise, blend in numpy)
and of ours (torch, FFT Gaussian), their ratio and the largest difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from vea_engine.attribution import AttentionMap, evidence_map
from vea_engine.geometry import ImageGeometry
from vea_engine.mask import blend


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
    print(f"mask pipeline {args.size}x{args.size}, sigma=0.5*min(H,W)={0.5 * args.size:.0f}px, torch threads={torch.get_num_threads()}")
    print(f"  reference (numpy+scipy): {t_ref * 1000:9.1f} ms")
    print(f"  ours (torch, FFT):       {t_ours * 1000:9.1f} ms")
    print(f"  speed-up reference/ours: {t_ref / t_ours:9.1f}x   (target >= 20x)")
    print(f"  max |difference|:        {diff:.2e}   (target <= 1e-3)")


if __name__ == "__main__":
    main()
