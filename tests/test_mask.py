"""Mask stages against numpy/scipy oracles and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from vea_engine.attribution import AttentionMap, evidence_map
from vea_engine.geometry import ImageGeometry
from vea_engine.mask import blend, denoise, gaussian_smooth, heatmap, minmax_normalize, paint

RNG = np.random.default_rng(1234)


# ---- numpy oracles, written from the paper's definitions ------------------------------------
def denoise_ref(grid: np.ndarray, lam: float) -> np.ndarray:
    grid = grid.astype(np.float32)
    h, w = grid.shape
    if h < 3 or w < 3:
        return grid.copy()
    padded = np.pad(grid, 1, mode="edge")
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    neigh = np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in offsets])
    return np.where(grid > lam * neigh.max(0), neigh.mean(0), grid).astype(np.float32)


def paint_ref(grid: np.ndarray, patch_h: int, patch_w: int) -> np.ndarray:
    h, w = grid.shape
    canvas = np.zeros((h * patch_h, w * patch_w), np.float32)
    for i in range(h):
        for j in range(w):
            canvas[i * patch_h : (i + 1) * patch_h, j * patch_w : (j + 1) * patch_w] = grid[i, j]
    return canvas


def smooth_ref(pixel_map: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return pixel_map.astype(np.float32)
    if sigma <= 1:
        sigma = sigma * min(pixel_map.shape)
    return gaussian_filter(pixel_map.astype(np.float32), sigma=sigma)


def normalize_ref(pixel_map: np.ndarray) -> np.ndarray:
    lo, hi = float(pixel_map.min()), float(pixel_map.max())
    if hi <= lo:
        return np.zeros_like(pixel_map, np.float32)
    return ((pixel_map - lo) / (hi - lo)).astype(np.float32)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))[None]


# ---- denoise ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3), (5, 7), (24, 24), (1, 9), (2, 2), (9, 1), (4, 3)])
def test_denoise_matches_reference_exactly(shape):
    grid = RNG.random(shape).astype(np.float32) * 0.01
    spikes = RNG.random(shape) < 0.15
    grid[spikes] = 1.0  # isolated spikes far above lam * neighbours
    ours = denoise(t(grid), 10.0)[0].numpy()
    np.testing.assert_array_equal(ours, denoise_ref(grid, 10.0))


def test_denoise_hand_computed():
    grid = np.ones((3, 3), np.float32)
    grid[0, 0] = 2.0  # corner: its edge-padded neighbours include itself and the centre -> kept
    grid[1, 1] = 21.0  # 21 > 10 * max(2, 1, ...) = 20 -> spike -> mean of its 8 neighbours
    out = denoise(t(grid))[0].numpy()
    expected = grid.copy()
    expected[1, 1] = (2.0 + 7 * 1.0) / 8
    assert not (denoise(t(np.where(grid == 21.0, 20.0, grid)))[0].numpy() != np.where(grid == 21.0, 20.0, grid)).any()
    np.testing.assert_array_equal(out, expected)


def test_denoise_small_grid_unchanged_and_batched():
    grid = torch.tensor([[[100.0, 0.0], [0.0, 0.0]]])
    assert torch.equal(denoise(grid), grid)
    batch = torch.from_numpy(RNG.random((3, 6, 5)).astype(np.float32))
    for b in range(3):
        np.testing.assert_array_equal(denoise(batch)[b].numpy(), denoise_ref(batch[b].numpy(), 10.0))


def test_denoise_edge_padding_makes_corner_see_itself():
    # A corner spike: edge padding puts copies of the spike among its own neighbours -> never a spike.
    grid = np.zeros((4, 4), np.float32)
    grid[0, 0] = 5.0
    np.testing.assert_array_equal(denoise(t(grid))[0].numpy(), grid)


# ---- paint -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,patch", [((24, 24), (14, 14)), ((5, 7), (28, 28)), ((1, 9), (3, 2)), ((3, 1), (5, 4))])
def test_paint_matches_reference_exactly(shape, patch):
    grid = RNG.random(shape).astype(np.float32)
    ours = paint(t(grid), (shape[0] * patch[0], shape[1] * patch[1]))[0].numpy()
    np.testing.assert_array_equal(ours, paint_ref(grid, *patch))


def test_paint_hand_computed_with_box():
    grid = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    out = paint(grid, (3, 5), box=(1, 1, 5, 3))[0]
    expected = torch.tensor(
        [[0, 0, 0, 0, 0], [0, 1, 1, 2, 2], [0, 3, 3, 4, 4]],
        dtype=torch.float32,
    )
    assert torch.equal(out, expected)


# ---- smooth ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hw,sigma",
    [((64, 48), 0.5), ((17, 31), 0.5), ((1, 40), 0.5), ((33, 1), 0.25), ((50, 50), 3.0), ((20, 30), 45.0), ((7, 9), 1.0)],
)
def test_gaussian_matches_scipy(hw, sigma):
    pixel_map = RNG.random(hw).astype(np.float32)
    ours = gaussian_smooth(t(pixel_map), sigma)[0].numpy()
    np.testing.assert_allclose(ours, smooth_ref(pixel_map, sigma), atol=1e-4)


def test_gaussian_large_sigma_full_resolution():
    pixel_map = np.zeros((256, 320), np.float32)
    pixel_map[100:140, 50:90] = 1.0
    ours = gaussian_smooth(t(pixel_map), 0.5)[0].numpy()
    np.testing.assert_allclose(ours, smooth_ref(pixel_map, 0.5), atol=1e-4)


def test_gaussian_hand_computed_and_off():
    # A constant map stays constant under any reflect-mode Gaussian (weights sum to 1).
    const = torch.full((1, 9, 4), 0.25)
    torch.testing.assert_close(gaussian_smooth(const, 0.5), const, atol=1e-6, rtol=0)
    x = torch.rand(2, 5, 6)
    assert torch.equal(gaussian_smooth(x, 0), x)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gaussian_smooth(x, -1.0)


# ---- normalise -----------------------------------------------------------------------------
def test_minmax_matches_reference_and_constant_is_zero():
    maps = RNG.random((3, 8, 5)).astype(np.float32) * 7 - 2
    maps[1] = 3.0  # constant map
    ours = minmax_normalize(torch.from_numpy(maps)).numpy()
    for b in range(3):
        np.testing.assert_allclose(ours[b], normalize_ref(maps[b]), atol=1e-6)
    assert (ours[1] == 0).all()
    hand = minmax_normalize(torch.tensor([[[2.0, 4.0], [6.0, 10.0]]]))
    assert torch.equal(hand, torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


# ---- blend -------------------------------------------------------------------------------
def test_blend_hand_computed_and_reference():
    image = torch.tensor([[[[0.8, 0.4, 1.0], [0.2, 0.6, 0.0]]]])  # [1, 1, 2, 3]
    mask = torch.tensor([[[1.0, 0.0]]])
    out = blend(image, mask, alpha=0.5)
    expected = torch.tensor([[[[0.8, 0.4, 1.0], [0.1, 0.3, 0.0]]]])
    torch.testing.assert_close(out, expected)
    # reference in 0..255 with uint8 truncation: differs from ours by at most one grey level
    pixels = RNG.integers(0, 256, (1, 12, 10, 3)).astype(np.float32)
    emap = RNG.random((1, 12, 10)).astype(np.float32)
    ref = np.clip(pixels * (0.3 + 0.7 * emap)[..., None], 0, 255).astype(np.uint8)
    ours = blend(torch.from_numpy(pixels / 255), torch.from_numpy(emap), 0.3).numpy() * 255
    assert np.abs(ours - ref).max() < 1.0 + 1e-3


def test_blend_rejects_mismatched_sizes_with_fix():
    with pytest.raises(ValueError, match="align it first"):
        blend(torch.zeros(1, 8, 8, 3), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="alpha"):
        blend(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4), alpha=2.0)
    with pytest.raises(ValueError, match="2 masks for 3 images"):
        blend(torch.zeros(3, 4, 4, 3), torch.zeros(2, 4, 4))


# ---- whole pipeline ------------------------------------------------------------------------
@pytest.mark.parametrize("grid_hw,patch", [((6, 6), 14), ((5, 7), 28), ((1, 9), 28), ((2, 2), 14)])
def test_evidence_pipeline_matches_reference(grid_hw, patch):
    grid = RNG.random(grid_hw).astype(np.float32)
    grid[0, 0] = 50.0
    canvas_hw = (grid_hw[0] * patch, grid_hw[1] * patch)
    geometry = ImageGeometry.single_grid(*grid_hw, canvas_hw, canvas_hw, (0, 0, canvas_hw[1], canvas_hw[0]))
    attention = AttentionMap(t(grid).flatten(1), geometry, torch.zeros(1, *canvas_hw, 3), (0,), "hand-made", ("?",))
    ours = evidence_map(attention)[0].numpy()
    ref = normalize_ref(smooth_ref(paint_ref(denoise_ref(grid, 10.0), patch, patch), 0.5))
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert ours.min() == 0.0 and abs(ours.max() - 1.0) < 1e-6


def test_heatmap_range_and_endpoints():
    colours = heatmap(torch.tensor([[[0.0, 1.0]]]))
    assert colours.shape == (1, 1, 2, 3)
    torch.testing.assert_close(colours[0, 0, 0], torch.tensor([0.0, 0.0, 0.5]))
    torch.testing.assert_close(colours[0, 0, 1], torch.tensor([0.5, 0.0, 0.0]))
