"""Mask stages against numpy/scipy oracles and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from vea_engine.attribution import AttentionMap, evidence_map
from vea_engine.config import ROUNDING_MODES
from vea_engine.geometry import ImageGeometry
from vea_engine.mask import (
    blend,
    denoise,
    gaussian_smooth,
    heatmap,
    highlight_uint8,
    minmax_normalize,
    paint,
)


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


def highlight_ref(image: np.ndarray, evidence_map: np.ndarray, alpha: float) -> np.ndarray:
    """The reference code's highlight, verbatim (float32 map, Python-float alpha, uint8 truncation)."""
    arr = np.asarray(image, np.float32)
    gain = (alpha + (1.0 - alpha) * evidence_map)[..., None]
    return np.clip(arr * gain, 0, 255).astype(np.uint8)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))[None]


# ---- denoise ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3), (5, 7), (24, 24), (1, 9), (2, 2), (9, 1), (4, 3)])
def test_denoise_matches_reference_exactly(shape):
    rng = np.random.default_rng(1234)
    grid = rng.random(shape).astype(np.float32) * 0.01
    spikes = rng.random(shape) < 0.15
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
    rng = np.random.default_rng(1234)
    grid = torch.tensor([[[100.0, 0.0], [0.0, 0.0]]])
    assert torch.equal(denoise(grid), grid)
    batch = torch.from_numpy(rng.random((3, 6, 5)).astype(np.float32))
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
    rng = np.random.default_rng(1234)
    grid = rng.random(shape).astype(np.float32)
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


def test_paint_box_reaching_past_the_canvas_is_cut_off():
    grid = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # 2x2 cells of 2x2 px over the box (-1, -1)..(3, 3)
    out = paint(grid, (3, 4), box=(-1, -1, 3, 3))[0]
    expected = torch.tensor([[1, 2, 2, 0], [3, 4, 4, 0], [3, 4, 4, 0]], dtype=torch.float32)
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="does not overlap the canvas"):
        paint(grid, (3, 4), box=(4, 0, 6, 2))


# ---- smooth ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hw,sigma",
    [
        ((64, 48), 0.5),
        ((17, 31), 0.5),
        ((1, 40), 0.5),
        ((33, 1), 0.25),
        ((50, 50), 3.0),
        ((20, 30), 45.0),
        ((7, 9), 1.0),
    ],
)
def test_gaussian_matches_scipy(hw, sigma):
    rng = np.random.default_rng(1234)
    pixel_map = rng.random(hw).astype(np.float32)
    ours = gaussian_smooth(t(pixel_map), sigma)[0].numpy()
    np.testing.assert_allclose(ours, smooth_ref(pixel_map, sigma), atol=1e-5, rtol=0)


def test_gaussian_large_sigma_full_resolution():
    pixel_map = np.zeros((256, 320), np.float32)
    pixel_map[100:140, 50:90] = 1.0
    ours = gaussian_smooth(t(pixel_map), 0.5)[0].numpy()
    np.testing.assert_allclose(ours, smooth_ref(pixel_map, 0.5), atol=1e-5, rtol=0)


def test_gaussian_hand_computed_and_off():
    # A constant map stays constant under any reflect-mode Gaussian (weights sum to 1).
    const = torch.full((1, 9, 4), 0.25)
    torch.testing.assert_close(gaussian_smooth(const, 0.5), const, atol=1e-6, rtol=0)
    x = torch.rand(2, 5, 6)
    assert torch.equal(gaussian_smooth(x, 0), x)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gaussian_smooth(x, -1.0)


def _test_map(hw: tuple[int, int], kind: str, rng: np.random.Generator) -> np.ndarray:
    """A float32 map: uniform noise, nearly flat (range 1e-4), or painted 14-px cells with one spike."""
    if kind == "random":
        return rng.random(hw).astype(np.float32)
    if kind == "flat":
        return (0.5 + 1e-4 * rng.random(hw)).astype(np.float32)
    cells = rng.random((-(-hw[0] // 14), -(-hw[1] // 14))).astype(np.float32)
    cells[0, 0] = 5.0
    return np.kron(cells, np.ones((14, 14), np.float32))[: hw[0], : hw[1]].copy()


# sigma <= 1 is relative to the shorter side, > 1 absolute pixels; 0.01 * 50 = 0.5 px and 0.02 * 50 = 1 px
SIGMAS = [0.5, 1.0, 0.25, 2.0, 1.5, 1.01, 3.0, 0.01, 0.02]


@pytest.mark.parametrize("kind", ["random", "flat", "cells"])
@pytest.mark.parametrize("hw", [(84, 84), (50, 60), (28, 252), (17, 31), (7, 9), (1, 40), (33, 1)])
def test_gaussian_and_minmax_within_1e5_of_scipy_for_every_sigma(hw, kind):
    # float32 round-off in the FFT used to reach 8.8e-3 after min-max at sigma 1.0 (nearly flat map)
    rng = np.random.default_rng([*hw, len(kind)])  # deterministic (str hashes are salted per process)
    pixel_map = _test_map(hw, kind, rng)
    for sigma in SIGMAS:
        ref = smooth_ref(pixel_map, sigma)
        ours = gaussian_smooth(t(pixel_map), sigma)[0].numpy()
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0, err_msg=f"sigma={sigma}")
        np.testing.assert_allclose(
            minmax_normalize(t(ours))[0].numpy(), normalize_ref(ref), atol=1e-5, rtol=0, err_msg=f"sigma={sigma}"
        )


def test_gaussian_rounds_each_axis_to_float32_like_scipy():
    # scipy filters each axis of a float32 map in double and stores it as float32: so do we, hence equal
    # bit for bit here (a float32 FFT differs in most pixels; one rounding at the end in some).
    pixel_map = _test_map((84, 84), "flat", np.random.default_rng(7))
    for sigma in (1.0, 2.0, 0.5):
        np.testing.assert_array_equal(gaussian_smooth(t(pixel_map), sigma)[0].numpy(), smooth_ref(pixel_map, sigma))


def test_gaussian_batched_equals_one_by_one():
    rng = np.random.default_rng(3)
    maps = np.stack([_test_map((30, 45), kind, rng) for kind in ("random", "flat", "cells")])
    batch = gaussian_smooth(torch.from_numpy(maps), 1.0)
    assert batch.shape == (3, 30, 45) and batch.dtype == torch.float32
    for b in range(3):
        assert torch.equal(batch[b], gaussian_smooth(torch.from_numpy(maps[b])[None], 1.0)[0])


@pytest.mark.parametrize(
    "hw,grid,box",
    [
        ((1120, 1120), (40, 40), None),  # Qwen2.5-VL, 1,600 tokens: 28-px cells
        ((336, 336), (24, 24), None),  # LLaVA-1.5: 14-px cells
        ((140, 196), (5, 7), None),
        ((672, 672), (24, 24), (0, 0, 700, 690)),  # a grid reaching past the canvas (LLaVA-NeXT base image)
        ((300, 500), (10, 10), (10, 40, 480, 290)),  # a grid on part of the canvas: zeros around it
    ],
)
def test_painted_grids_take_the_block_path_and_equal_scipy_bit_for_bit(hw, grid, box):
    from vea_engine.mask import _smooth_axis, _smooth_runs

    cells = torch.rand(2, *grid, generator=torch.Generator().manual_seed(sum(hw)))
    painted = paint(cells, hw, box)  # [2, H, W]
    for sigma in (0.5, 1.0, 0.1, 3.0):
        px = sigma * min(hw) if sigma <= 1 else sigma
        blocks = _smooth_runs(painted, px)
        assert blocks is not None  # few runs of equal rows / columns: the block path is taken
        fft = _smooth_axis(_smooth_axis(painted, px, 1), px, 2).numpy()
        if hw[0] * hw[1] > 400 * 400 and px > 30:
            # scipy's direct filter costs ~10 s here: the block path equals the FFT path (checked against scipy
            # at the other sizes) away from the exact-zero tails
            tails = np.abs(fft) < 1e-12
            np.testing.assert_array_equal(blocks.numpy()[~tails], fft[~tails])
            continue
        for b in range(2):
            ref = smooth_ref(painted[b].numpy(), sigma)
            # bit for bit, except where scipy's truncated kernel gives exact zeros and the filtered
            # indicators (like the FFT path) leave float64 round-off below 1e-15
            tails = np.abs(ref) < 1e-12
            for ours in (blocks[b].numpy(), fft[b]):
                np.testing.assert_array_equal(ours[~tails], ref[~tails], err_msg=f"sigma={sigma}")
                assert np.abs(ours[tails]).max(initial=0) < 1e-14


def test_unblocky_maps_take_the_fft_path():
    from vea_engine.mask import _smooth_runs

    assert _smooth_runs(torch.rand(1, 64, 48), 5.0) is None
    assert _smooth_runs(torch.rand(1, 1, 40), 5.0) is None


# ---- normalise -----------------------------------------------------------------------------
def test_minmax_matches_reference_and_constant_is_zero():
    rng = np.random.default_rng(1234)
    maps = rng.random((3, 8, 5)).astype(np.float32) * 7 - 2
    maps[1] = 3.0  # constant map
    ours = minmax_normalize(torch.from_numpy(maps)).numpy()
    for b in range(3):
        np.testing.assert_allclose(ours[b], normalize_ref(maps[b]), atol=1e-6)
    assert (ours[1] == 0).all()
    hand = minmax_normalize(torch.tensor([[[2.0, 4.0], [6.0, 10.0]]]))
    assert torch.equal(hand, torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (7.0, -2.0), (1e-4, 0.5), (3e4, 1e-3), (1e-6, -1e3)])
def test_minmax_bit_identical_to_reference(scale, offset):
    rng = np.random.default_rng(int(scale * 1000) % 997)
    maps = (rng.random((4, 23, 17)) * scale + offset).astype(np.float32)
    maps[2] = maps[2, 0, 0]  # a constant map -> zeros
    ours = minmax_normalize(torch.from_numpy(maps)).numpy()
    assert ours.dtype == np.float32
    for b in range(4):
        np.testing.assert_array_equal(ours[b], normalize_ref(maps[b]))
    assert (ours[2] == 0).all()


# ---- blend -------------------------------------------------------------------------------
def test_blend_hand_computed_and_reference():
    rng = np.random.default_rng(1234)
    image = torch.tensor([[[[0.8, 0.4, 1.0], [0.2, 0.6, 0.0]]]])  # [1, 1, 2, 3]
    mask = torch.tensor([[[1.0, 0.0]]])
    out = blend(image, mask, alpha=0.5)
    expected = torch.tensor([[[[0.8, 0.4, 1.0], [0.1, 0.3, 0.0]]]])
    torch.testing.assert_close(out, expected)
    # reference in 0..255 with uint8 truncation: differs from ours by at most one grey level
    pixels = rng.integers(0, 256, (1, 12, 10, 3)).astype(np.float32)
    emap = rng.random((1, 12, 10)).astype(np.float32)
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


# ---- highlight_uint8 ---------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.0, 1.0, 0.7, 0.1])
def test_highlight_uint8_bit_identical_to_reference(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    canvas = rng.integers(0, 256, (3, 19, 23, 3), dtype=np.uint8)
    emap = rng.random((3, 19, 23)).astype(np.float32)
    emap[:, 0, :4] = [0.0, 1.0, 0.5, 0.25]
    ours = highlight_uint8(torch.from_numpy(canvas), torch.from_numpy(emap), alpha)
    assert ours.dtype == torch.uint8 and ours.shape == (3, 19, 23, 3)
    np.testing.assert_array_equal(ours.numpy(), highlight_ref(canvas, emap, alpha))


def test_highlight_uint8_on_integer_boundaries():
    # gains that make pixel * gain land exactly on integers (and one float32 step either side of them)
    pixels = np.arange(256, dtype=np.uint8)
    canvas = np.broadcast_to(pixels[None, None, :, None], (1, 1, 256, 3)).copy()
    for alpha in (0.5, 0.25, 0.75):
        for e in (0.0, 0.25, 0.5, 0.75, 1.0, 1 / 3):
            e32 = np.float32(e)
            for value in (e32, np.nextafter(e32, np.float32(0)), np.nextafter(e32, np.float32(1))):
                emap = np.full((1, 1, 256), np.clip(value, 0, 1), np.float32)
                ref = highlight_ref(canvas, emap, alpha)
                ours = highlight_uint8(torch.from_numpy(canvas), torch.from_numpy(emap), alpha).numpy()
                np.testing.assert_array_equal(ours, ref, err_msg=f"alpha={alpha}, e={value!r}")
                rounded = highlight_uint8(torch.from_numpy(canvas), torch.from_numpy(emap), alpha, rounding="round")
                gain = (alpha + (1.0 - alpha) * emap)[..., None]
                expected = np.rint(np.clip(canvas.astype(np.float32) * gain, 0, 255)).astype(np.uint8)  # ties to even
                np.testing.assert_array_equal(rounded.numpy(), expected)


def test_highlight_uint8_hand_computed():
    canvas = torch.tensor([[[[255, 3, 5], [255, 3, 5], [200, 100, 0]]]], dtype=torch.uint8)  # [1, 1, 3, 3]
    mask = torch.tensor([[[0.0, 1.0, 0.5]]])
    out = highlight_uint8(canvas, mask, alpha=0.5)
    # mask 0: 255 * 0.5 = 127.5 -> 127, 3 * 0.5 = 1.5 -> 1, 5 * 0.5 = 2.5 -> 2; mask 1 keeps the pixel;
    # mask 0.5: gain 0.75 -> 150, 75, 0
    expected = torch.tensor([[[[127, 1, 2], [255, 3, 5], [150, 75, 0]]]], dtype=torch.uint8)
    assert torch.equal(out, expected)
    rounded = highlight_uint8(canvas, mask, alpha=0.5, rounding="round")  # ties to even: 127.5 -> 128, 2.5 -> 2
    assert torch.equal(rounded, torch.tensor([[[[128, 2, 2], [255, 3, 5], [150, 75, 0]]]], dtype=torch.uint8))
    assert torch.equal(highlight_uint8(canvas, mask, alpha=1.0), canvas)  # alpha 1: nothing dimmed
    assert torch.equal(highlight_uint8(canvas, torch.zeros(1, 1, 3), alpha=0.0), torch.zeros_like(canvas))
    over = highlight_uint8(torch.full((1, 1, 1, 3), 250, dtype=torch.uint8), torch.full((1, 1, 1), 1.5), 0.5)
    assert torch.equal(over, torch.full((1, 1, 1, 3), 255, dtype=torch.uint8))  # clipped, as np.clip


def test_highlight_uint8_one_mask_for_batch_and_inputs_untouched():
    rng = np.random.default_rng(11)
    canvas = torch.from_numpy(rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8))
    mask = torch.from_numpy(rng.random((1, 6, 5)).astype(np.float32))
    before = canvas.clone(), mask.clone()
    out = highlight_uint8(canvas, mask)
    assert torch.equal(canvas, before[0]) and torch.equal(mask, before[1])
    for b in range(4):
        np.testing.assert_array_equal(out[b].numpy(), highlight_ref(canvas[b].numpy(), mask[0].numpy(), 0.5))
    # a float64 mask is used as the reference's float32 map
    assert torch.equal(highlight_uint8(canvas, mask.double()), out)


def test_highlight_uint8_rejects_bad_input_with_fix():
    canvas, mask = torch.zeros(1, 4, 4, 3, dtype=torch.uint8), torch.zeros(1, 4, 4)
    assert ROUNDING_MODES == ("truncate", "round")
    with pytest.raises(ValueError, match=r"rounding must be one of \('truncate', 'round'\), got 'floor'"):
        highlight_uint8(canvas, mask, rounding="floor")
    with pytest.raises(ValueError, match="canvas must be uint8.*blend"):
        highlight_uint8(canvas.float(), mask)
    with pytest.raises(ValueError, match="NaN or inf"):
        highlight_uint8(canvas, torch.full((1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="NaN or inf"):
        highlight_uint8(canvas, torch.full((1, 4, 4), float("inf")))
    with pytest.raises(ValueError, match="alpha must be in"):
        highlight_uint8(canvas, mask, alpha=1.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        highlight_uint8(canvas, mask, alpha=float("nan"))
    with pytest.raises(ValueError, match="align it first"):
        highlight_uint8(torch.zeros(1, 8, 8, 3, dtype=torch.uint8), mask)
    with pytest.raises(ValueError, match="2 masks for 3 images"):
        highlight_uint8(torch.zeros(3, 4, 4, 3, dtype=torch.uint8), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"expected a 4D tensor \[B, H, W, 3\] uint8 canvas"):
        highlight_uint8(torch.zeros(4, 4, 3, dtype=torch.uint8), mask)
    with pytest.raises(ValueError, match="expected a 3D tensor"):
        highlight_uint8(canvas, torch.zeros(4, 4))


# ---- whole pipeline ------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.5, 1.0, 0.25, 2.0])
@pytest.mark.parametrize("grid_hw,patch", [((6, 6), 14), ((5, 7), 28), ((1, 9), 28), ((2, 2), 14)])
def test_evidence_pipeline_matches_reference(grid_hw, patch, sigma):
    rng = np.random.default_rng(1234)
    grid = rng.random(grid_hw).astype(np.float32)
    grid[0, 0] = 50.0
    canvas_hw = (grid_hw[0] * patch, grid_hw[1] * patch)
    geometry = ImageGeometry.single_grid(*grid_hw, canvas_hw, canvas_hw, (0, 0, canvas_hw[1], canvas_hw[0]))
    attention = AttentionMap(t(grid).flatten(1), geometry, torch.zeros(1, *canvas_hw, 3), (0,), "hand-made", ("?",))
    ours = evidence_map(attention, sigma=sigma)[0].numpy()
    ref = normalize_ref(smooth_ref(paint_ref(denoise_ref(grid, 10.0), patch, patch), sigma))
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)  # min-max of a nearly flat map at sigma 1.0 too
    assert ours.min() == 0.0 and abs(ours.max() - 1.0) < 1e-6


def test_heatmap_range_and_endpoints():
    colours = heatmap(torch.tensor([[[0.0, 1.0]]]))
    assert colours.shape == (1, 1, 2, 3)
    torch.testing.assert_close(colours[0, 0, 0], torch.tensor([0.0, 0.0, 0.5]))
    torch.testing.assert_close(colours[0, 0, 1], torch.tensor([0.5, 0.0, 0.0]))
