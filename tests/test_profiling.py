"""Layer profiling: evidence labels by hand, planted layers found, AUROC equal to sklearn on eager rows."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score

from tests.helpers import ENGINE_FAMILIES, eval_args
from tests.planting import planted
from vea_engine.attribution import extract_attention
from vea_engine.data import load_manifest
from vea_engine.decoder import LayerKinds
from vea_engine.geometry import GridPart, ImageGeometry
from vea_engine.inputs import encode_batch
from vea_engine.labels import evidence_labels
from vea_engine.layers import LayerSelection
from vea_engine.profile_plot import SELECTED_FILL, plot_profile
from vea_engine.profiling import LayerProfile, n_top_layers, profile_layers, select_top_layers
from vea_engine.synthetic import write_dataset

PLANTED_LAYERS = (2, 4)

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid(cells: list[tuple[int, int]], rows: int = 4, cols: int = 4) -> list[int]:
    """Token indices (row-major) of ``(row, col)`` cells."""
    return sorted(r * cols + c for r, c in cells)


def _on(labels: torch.Tensor) -> list[int]:
    return labels.nonzero().flatten().tolist()


# ---------------------------------------------------------------------------------------------
# evidence_labels
# ---------------------------------------------------------------------------------------------


def test_evidence_labels_hand_computed_rules_differ():
    # 4x4 grid of 10-px cells on a 40x40 canvas showing an 80x80 original: canvas = original / 2.
    g = ImageGeometry.single_grid(4, 4, (40, 40), (80, 80), (0, 0, 80, 80))
    boxes = [
        [20, 20, 60, 46],  # canvas [10, 10, 30, 23]: cells (1,1) (1,2) full; (2,1) (2,2) 30 %
        [60, 50, 72, 80],  # canvas [30, 25, 36, 40]: (2,3) 0.6 x 0.5 = 30 %; (3,3) 60 %
        [0, 60, 10, 80],  # canvas [0, 30, 5, 40]: left half of (3,0) ...
        [10, 60, 20, 80],  # canvas [5, 30, 10, 40]: ... right half: the union covers (3,0); touches (3,1) only at x=10
        [0, 0, 20, 10],  # canvas [0, 0, 10, 5]: exactly half of (0,0)
    ]
    assert _on(evidence_labels(g, boxes, "any")) == _grid(
        [(0, 0), (1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 3), (3, 0)]
    )
    assert _on(evidence_labels(g, boxes, "half")) == _grid([(0, 0), (1, 1), (1, 2), (3, 3), (3, 0)])
    assert _on(evidence_labels(g, boxes, "all")) == _grid([(1, 1), (1, 2), (3, 0)])
    assert evidence_labels(g, boxes).dtype == torch.bool and evidence_labels(g, boxes).shape == (16,)
    assert not evidence_labels(g, np.zeros((0, 4))).any()


def test_evidence_labels_cropped_canvas_and_boxes_outside():
    # A centre crop (LLaVA-1.5 style): the 40x40 canvas shows x in [10, 90) of a 100x80 original, at scale 1/2.
    g = ImageGeometry.single_grid(4, 4, (40, 40), (80, 100), (10, 0, 90, 80))
    exact = [[10, 0, 30, 20]]  # canvas [0, 0, 10, 10]: exactly cell (0, 0)
    for rule in ("any", "half", "all"):
        assert _on(evidence_labels(g, exact, rule)) == [0]
    sliver = [[0, 0, 12, 40]]  # canvas [-5, 0, 1, 20]: 10 % of cells (0,0) and (1,0), the rest cropped away
    assert _on(evidence_labels(g, sliver, "any")) == _grid([(0, 0), (1, 0)])
    assert _on(evidence_labels(g, sliver, "half")) == []
    outside = [[90, 0, 100, 80]]  # entirely in the cropped-away strip
    assert _on(evidence_labels(g, outside, "any")) == []


def test_evidence_labels_two_grids_in_token_order():
    # Two parts (base grid + one tile) covering overlapping canvas regions; tokens of part 2 follow part 1.
    g = ImageGeometry(
        canvas_hw=(20, 40),
        parts=(GridPart(0, 1, 2, (0, 0, 40, 20)), GridPart(2, 2, 2, (20, 0, 40, 20))),
        original_hw=(20, 40),
        canvas_in_original=(0, 0, 40, 20),
    )
    labels = evidence_labels(g, [[30, 0, 40, 10]], "all")  # base cell 1 is 20x20 (25 % covered); tile cell 1 is 10x10
    assert _on(labels) == [2 + 1]
    assert _on(evidence_labels(g, [[30, 0, 40, 10]], "any")) == [1, 2 + 1]


def test_evidence_labels_match_rasterised_oracle():
    """Coverage fractions on a 1/8-pixel raster (boxes on that lattice) give the same labels."""
    rng = np.random.default_rng(0)
    rows, cols, cell = 5, 7, 10
    g = ImageGeometry.single_grid(
        rows, cols, (rows * cell, cols * cell), (rows * cell, cols * cell), (0, 0, cols * cell, rows * cell)
    )
    sub = 8
    for _ in range(40):
        m = int(rng.integers(1, 4))
        lo = rng.uniform([-5, -5], [cols * cell, rows * cell], size=(m, 2))
        size = rng.uniform(0.5, 40, size=(m, 2))
        boxes = np.round(np.concatenate([lo, lo + size], 1) * sub) / sub  # [m, 4] on the 1/8 lattice
        mask = np.zeros((rows * cell * sub, cols * cell * sub), bool)
        for x0, y0, x1, y1 in (boxes * sub).astype(int):
            mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
        fraction = mask.reshape(rows, cell * sub, cols, cell * sub).mean((1, 3)).reshape(-1)
        assert np.array_equal(evidence_labels(g, boxes, "any").numpy(), fraction > 0)
        assert np.array_equal(evidence_labels(g, boxes, "half").numpy(), fraction >= 0.5)
        assert np.array_equal(evidence_labels(g, boxes, "all").numpy(), fraction == 1.0)


def test_evidence_labels_reject_bad_input():
    g = ImageGeometry.single_grid(2, 2, (20, 20), (20, 20), (0, 0, 20, 20))
    with pytest.raises(ValueError, match="rule must be one of"):
        evidence_labels(g, [[0, 0, 5, 5]], "most")
    with pytest.raises(ValueError, match="x1 <= x0"):
        evidence_labels(g, [[5, 0, 5, 5]])


def _llava_centre_crop(original_hw, side):
    """``canvas_in_original`` of a LLaVA-1.5 shortest-edge resize to ``side`` + centre crop, same float arithmetic."""
    h0, w0 = original_hw
    scale = side / min(h0, w0)
    x0, y0 = (w0 * scale - side) / 2 / scale, (h0 * scale - side) / 2 / scale
    return (x0, y0, x0 + side / scale, y0 + side / scale)


@pytest.mark.parametrize(
    ("side", "any_rows", "half_rows", "all_rows"),
    [
        # tiny LLaVA: 84-px canvas, 6x6 grid of 14-px cells; canvas box [-98, 20.72, 42, 42]: cols 0-2,
        # rows 1 (52 % covered) and 2 (whole)
        (84, (1, 2), (1, 2), (2,)),
        # LLaVA-1.5 (real): 336-px canvas, 24x24; canvas box [-392, 82.88, 168, 168]: cols 0-11,
        # rows 5 (8 % covered) to 11
        (336, range(5, 12), range(6, 12), range(6, 12)),
    ],
)
def test_evidence_labels_edge_on_a_cell_boundary_does_not_spill(side, any_rows, half_rows, all_rows):
    """Issue 8 item 7: the box's right edge maps to 42.00000000000004 (tiny) / 168.00000000000017 (real)."""
    n = side // 14
    g = ImageGeometry.single_grid(n, n, (side, side), (150, 1000), _llava_centre_crop((150, 1000), side))
    box = [[250, 37, 500, 75]]
    canvas = g.original_boxes_to_canvas(torch.tensor(box, dtype=torch.float64))[0].tolist()
    assert canvas[2] > 3 * side / 6 and canvas[2] - 3 * side / 6 < 1e-9  # the repro: just past the cell edge
    cols = range(n // 2)  # 3 (tiny) / 12 (real) columns, not 4 / 13
    for rule, rows in (("any", any_rows), ("half", half_rows), ("all", all_rows)):
        assert _on(evidence_labels(g, box, rule)) == _grid([(r, c) for r in rows for c in cols], n, n), rule
    assert len(_on(evidence_labels(g, box))) == {84: 6, 336: 84}[side]  # the old code marked 8 / 91


def test_evidence_labels_every_cell_boundary_through_the_projection():
    """Boxes whose edges are cell edges, given in original pixels (float round-off both ways), label one cell."""
    g = ImageGeometry.single_grid(6, 6, (84, 84), (150, 1000), _llava_centre_crop((150, 1000), 84))
    ox0, oy0, ox1, oy1 = g.canvas_in_original
    px = (ox1 - ox0) / 84  # original pixels per canvas pixel (150 / 84)
    for r in range(6):
        for c in range(6):
            box = [[ox0 + 14 * c * px, oy0 + 14 * r * px, ox0 + 14 * (c + 1) * px, oy0 + 14 * (r + 1) * px]]
            for rule in ("any", "half", "all"):
                assert _on(evidence_labels(g, box, rule)) == [r * 6 + c], (r, c, rule)
    # 1e-3 canvas px past every edge of cell (2, 3) reaches its 8 neighbours; 1e-3 px short is not all of it
    x0, y0, x1, y1 = ox0 + 42 * px, oy0 + 28 * px, ox0 + 56 * px, oy0 + 42 * px
    d = 1e-3 * px
    grown, shrunk = [[x0 - d, y0 - d, x1 + d, y1 + d]], [[x0 + d, y0 + d, x1 - d, y1 - d]]
    assert _on(evidence_labels(g, grown, "any")) == _grid([(r, c) for r in (1, 2, 3) for c in (2, 3, 4)], 6, 6)
    assert _on(evidence_labels(g, grown, "half")) == _on(evidence_labels(g, grown, "all")) == [2 * 6 + 3]
    assert _on(evidence_labels(g, shrunk, "any")) == _on(evidence_labels(g, shrunk, "half")) == [2 * 6 + 3]
    assert _on(evidence_labels(g, shrunk, "all")) == []


def test_evidence_labels_edges_on_just_inside_and_just_outside_boundaries():
    # 4x4 grid of 10-px cells; the canvas is the original (identity), so boxes are canvas pixels.
    g = ImageGeometry.single_grid(4, 4, (40, 40), (40, 40), (0, 0, 40, 40))
    d, tiny = 1e-3, 1e-9  # 1e-3 px counts; 1e-9 px is float round-off and snaps onto the edge
    cases = {
        # box: (any, half, all) as (row, col) cells of row 1
        (10, 10, 20, 20): ([1], [1], [1]),  # exactly cell (1, 1)
        (10 - tiny, 10 + tiny, 20 + tiny, 20 - tiny): ([1], [1], [1]),  # within the snap tolerance
        (10 - d, 10, 20 + d, 20): ([0, 1, 2], [1], [1]),  # 1e-3 px into the neighbours
        (10 + d, 10, 20 - d, 20): ([1], [1], []),  # 1e-3 px short of both edges: not all of (1, 1)
        (10, 10, 15, 20): ([1], [1], []),  # exactly half of (1, 1)
        (10, 10, 15 - d, 20): ([1], [], []),  # just under half
        (10, 10, 15 + d, 20): ([1], [1], []),  # just over half
        (0, 10, 30, 20): ([0, 1, 2], [0, 1, 2], [0, 1, 2]),  # three whole cells, touches (1, 3) only at x = 30
    }
    for box, expected in cases.items():
        for rule, cols in zip(("any", "half", "all"), expected, strict=True):
            assert _on(evidence_labels(g, [box], rule)) == _grid([(1, c) for c in cols]), (box, rule)
    # a 1e-3 px step over a row edge
    assert _on(evidence_labels(g, [[10, 10, 20, 20 + d]], "any")) == _grid([(1, 1), (2, 1)])
    assert _on(evidence_labels(g, [[10, 10, 20, 20 + tiny]], "any")) == _grid([(1, 1)])


def test_evidence_labels_sub_pixel_boxes_and_squashing_resize():
    g = ImageGeometry.single_grid(4, 4, (40, 40), (40, 40), (0, 0, 40, 40))
    # Sub-pixel boxes count (the reference truncates projected boxes to integers: these would vanish).
    assert _on(evidence_labels(g, [[12.2, 12.2, 12.6, 12.6]], "any")) == _grid([(1, 1)])
    assert _on(evidence_labels(g, [[19.8, 5.1, 20.3, 5.4]], "any")) == _grid([(0, 1), (0, 2)])
    # A squashing resize (Gemma 3): a 300x100 original shown whole on an 84x84 canvas; x and y scale apart.
    squash = ImageGeometry.single_grid(6, 6, (84, 84), (100, 300), (0, 0, 300, 100))
    box = [[0, 0, 50, 50]]  # canvas [0, 0, 14, 42]: column 0, rows 0-2 exactly
    for rule in ("any", "half", "all"):
        assert _on(evidence_labels(squash, box, rule)) == _grid([(0, 0), (1, 0), (2, 0)], 6, 6)


# ---------------------------------------------------------------------------------------------
# Layer selection
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auroc", "k", "expected"),
    [
        ([0.5, 0.9, 0.9, 0.7], 1, (2,)),  # tie: the higher layer wins
        ([0.5, 0.9, 0.9, 0.7], 2, (1, 2)),
        ([0.5, 0.9, 0.9, 0.7], 3, (1, 2, 3)),
        ([0.8, 0.8, 0.8, 0.8], 2, (2, 3)),  # all equal: the deepest k
        ([0.9, 0.5, 0.9, 0.9], 2, (2, 3)),
        ([0.7, 0.9, 0.7, 0.7, 0.6], 2, (1, 3)),  # tie at the cut
        ([0.6, 0.7, 0.7, 0.3, 0.7], 2, (2, 4)),
        ([0.4], 1, (0,)),
        ([float("nan"), 0.6, float("nan"), 0.4], 1, (1,)),  # nan ranks below every scored layer
        ([float("nan"), 0.6, float("nan"), 0.4], 2, (1, 3)),
        ([float("nan"), 0.6, float("nan"), 0.4], 3, (1, 2, 3)),  # among nan layers, the higher wins
        ([float("nan")] * 3, 1, (2,)),
    ],
)
def test_select_top_layers_reference_rule(auroc, k, expected):
    assert select_top_layers(auroc, k) == expected
    values = np.asarray(auroc)
    if not np.isnan(values).any():  # the reference's argsort(...)[-k:], with a stable ascending sort
        assert expected == tuple(sorted(np.argsort(values, kind="stable")[-k:].tolist()))


def test_select_top_layers_random_ties_and_nan_deviation():
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(1, 70))
        values = rng.integers(0, 5, n) / 4  # many ties
        k = int(rng.integers(1, n + 1))
        kept = select_top_layers(values, k)
        assert kept == tuple(sorted(np.argsort(values, kind="stable")[-k:].tolist()))
        dropped = [layer for layer in range(n) if layer not in kept]
        # nothing dropped beats a kept layer; an equal one dropped is below every kept equal
        for layer in dropped:
            assert all(values[layer] < values[j] or (values[layer] == values[j] and layer < j) for j in kept)
    # Plain np.argsort sorts nan last, so the reference would keep an unscored layer first; we keep layer 1.
    assert np.argsort(np.array([np.nan, 0.6, 0.4]))[-1] == 0 and select_top_layers([np.nan, 0.6, 0.4], 1) == (1,)
    for bad, k in (([], 1), ([0.5, 0.6], 0), ([0.5, 0.6], 3), ([[0.5]], 1)):
        with pytest.raises(ValueError, match="select_top_layers"):
            select_top_layers(bad, k)


def test_profile_layers_ties_keep_the_higher_layer(monkeypatch):
    """profile_layers selects with that rule: two layers with identical rows, one kept -> the higher."""
    import types

    import vea_engine.profiling as profiling

    g = ImageGeometry.single_grid(2, 2, (20, 20), (20, 20), (0, 0, 20, 20))
    rows = torch.tensor(
        [
            [0.1, 0.4, 0.3, 0.2],  # layer 0: evidence token 0 ranked last (AUROC 0)
            [0.9, 0.1, 0.0, 0.0],  # layer 1: perfect
            [0.9, 0.1, 0.0, 0.0],  # layer 2: the same row, the same AUROC 1.0
            [0.3, 0.3, 0.1, 0.1],  # layer 3: one tie, two wins: AUROC 5/6
        ]
    )
    monkeypatch.setattr(profiling, "layer_token_scores", lambda vlm, image, question: (rows, g))
    vlm = types.SimpleNamespace(num_layers=4, layer_kinds=LayerKinds.uniform(4), name="fake")
    sample = types.SimpleNamespace(id="s", image=None, question="q", boxes=((0.0, 0.0, 10.0, 10.0),))
    profile = profile_layers(vlm, [sample], top_fraction=0.25)  # one layer
    assert profile.auroc == (0.0, 1.0, 1.0, 5 / 6)
    assert profile.layers == (2,)  # the lower-layer-wins rule gave (1,)
    assert profile_layers(vlm, [sample], top_fraction=0.5).layers == (1, 2)
    assert profile_layers(vlm, [sample], top_fraction=0.75).layers == (1, 2, 3)


def test_n_top_layers_matches_paper_presets():
    # ceil(10 % of the depth), from the paper's pre-profiled checkpoints (32 -> 4, 28 -> 3, 64 -> 7, ...).
    assert [n_top_layers(n) for n in (32, 40, 28, 64, 34, 62)] == [4, 4, 3, 7, 4, 7]
    assert n_top_layers(30) == 3
    assert n_top_layers(100, 0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floating point
    assert n_top_layers(6, 0.3) == 2 and n_top_layers(6, 0.01) == 1 and n_top_layers(6, 1.0) == 6
    with pytest.raises(ValueError, match="top_fraction"):
        n_top_layers(6, 0.0)


# ---------------------------------------------------------------------------------------------
# profile_layers on tiny models
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_samples(tmp_path_factory):
    manifest = write_dataset(tmp_path_factory.mktemp("profile-data"), 8, seed=3, size=(224, 224))
    samples, bad = load_manifest(manifest, require_boxes=True)
    assert not bad and len(samples) == 8
    return samples


def _evidence_positions(vlm, sample, rule="any"):
    """Absolute input positions of the evidence tokens of one sample, and the labels."""
    batch = encode_batch(vlm, [sample.image], sample.question, "qa")  # the inputs profiling encodes
    positions = batch.positions[0].cpu()
    labels = evidence_labels(batch.geometry, sample.boxes, rule)
    return positions[labels].tolist(), labels, batch.inputs, positions


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_profile_finds_planted_layers(family, tiny_vlms, synthetic_samples, tmp_path):
    vlm = tiny_vlms[family]
    per_sample = [_evidence_positions(vlm, s) for s in synthetic_samples]
    assert all(0 < labels.sum() < labels.numel() for _, labels, _, _ in per_sample), "both classes in every sample"
    queue = iter([keys for keys, _, _, _ in per_sample])
    forwards = []

    def keys_of_next_sample(input_ids):
        forwards.append(input_ids.shape)
        return next(queue)

    with planted(vlm, PLANTED_LAYERS, keys_of_next_sample):
        profile = profile_layers(vlm, synthetic_samples, top_fraction=0.3)  # ceil(0.3 * 6) = 2 layers
    assert len(forwards) == len(synthetic_samples)  # one forward pass per sample, all layers at once
    assert profile.layers == PLANTED_LAYERS
    assert profile.n_samples == 8 and profile.n_skipped == 0 and profile.num_layers == 6
    for layer in PLANTED_LAYERS:  # every evidence token above every other token, in every sample
        assert profile.auroc[layer] == 1.0 and profile.ap[layer] == 1.0 and profile.ndcg[layer] == 1.0
    others = [profile.auroc[layer] for layer in range(6) if layer not in PLANTED_LAYERS]
    assert max(others) < 0.95

    # JSON round trip, then the selection drives attribution.
    path = profile.to_json(tmp_path / "profile.json")
    loaded = LayerProfile.from_json(path)
    assert loaded == profile and loaded.path == str(path)
    assert json.loads(path.read_text())["layers"] == list(PLANTED_LAYERS)
    selection = loaded.selection()
    assert selection == LayerSelection(PLANTED_LAYERS, f"profile:{path}", 6, profile.auroc)
    sample = synthetic_samples[0]
    keys, labels, _, _ = per_sample[0]
    with planted(vlm, PLANTED_LAYERS, keys):
        attention = extract_attention(vlm, [sample.image], sample.question, selection.check(vlm.num_layers))
    assert attention.layers == PLANTED_LAYERS
    assert attention.scores[0][labels].sum() > 0.99


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_profile_auroc_equals_sklearn_on_eager_rows(family, tiny_vlms, eager_vlms, synthetic_samples):
    """Oracle: eager ``output_attentions`` of the same checkpoint, scored by sklearn."""
    vlm, eager = tiny_vlms[family], eager_vlms[family]
    samples = synthetic_samples[:3]
    profile = profile_layers(vlm, samples)
    expected = {"auroc": [], "ap": [], "ndcg": []}
    for sample in samples:
        _, labels, inputs, positions = _evidence_positions(eager, sample)
        with torch.inference_mode():
            out = eager.model(**inputs, use_cache=False, output_attentions=True)
        rows = torch.stack([a[0, :, -1].double().mean(0) for a in out.attentions])[:, positions]  # [L, n_tokens]
        y = labels.numpy().astype(int)
        expected["auroc"].append([roc_auc_score(y, r) for r in rows.numpy()])
        expected["ap"].append([average_precision_score(y, r) for r in rows.numpy()])
        expected["ndcg"].append([ndcg_score(y[None], r[None]) for r in rows.numpy()])
    for key, values in expected.items():
        # rank metrics: identical token rankings give equal values up to float64 summation order
        np.testing.assert_allclose(getattr(profile, key), np.mean(values, axis=0), rtol=1e-9, atol=0)
    assert profile.n_samples == 3 and profile.n_skipped == 0
    top = sorted(np.argsort(np.mean(expected["auroc"], axis=0), kind="stable")[-1:].tolist())  # ties: higher layer
    assert list(profile.layers) == top  # ceil(0.1 * 6) = 1 layer


def test_profile_skips_single_class_samples(tiny_vlms, synthetic_samples, caplog):
    from dataclasses import replace

    vlm = tiny_vlms["llava"]
    w, h = synthetic_samples[0].image_size
    whole = replace(synthetic_samples[0], id="whole", boxes=((0.0, 0.0, float(w), float(h)),))  # every token
    with caplog.at_level(logging.INFO, logger="vea_engine.profiling"):
        profile = profile_layers(vlm, [whole, *synthetic_samples[1:3]])
    assert profile.n_samples == 2 and profile.n_skipped == 1
    assert "sample whole skipped" in caplog.text
    reference = profile_layers(vlm, synthetic_samples[1:3])
    assert profile.auroc == reference.auroc and profile.layers == reference.layers
    with pytest.raises(ValueError, match="all 1 samples were skipped"):
        profile_layers(vlm, [whole])
    with pytest.raises(ValueError, match="no evidence boxes"):
        profile_layers(vlm, [replace(whole, boxes=())])


# ---------------------------------------------------------------------------------------------
# JSON and plot
# ---------------------------------------------------------------------------------------------


def _toy_profile(n=8, layers=(3, 6)):
    auroc = tuple(0.5 + 0.05 * i for i in range(n))
    return LayerProfile(
        "org/toy-model", n, layers, auroc, tuple(0.3 for _ in range(n)), tuple(0.6 for _ in range(n)), 10, 2
    )


def test_profile_json_nan_and_errors(tmp_path):
    profile = _toy_profile()
    nan_profile = LayerProfile(
        profile.model_name, 8, (3,), (float("nan"),) + profile.auroc[1:], profile.ap, profile.ndcg, 10, 2
    )
    path = nan_profile.to_json(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["auroc"][0] is None and data["format"] == "vea-layer-profile/1"
    assert math.isnan(LayerProfile.from_json(path).auroc[0])
    assert profile.selection().source == "profile:org/toy-model"
    (tmp_path / "bad.json").write_text('{"layers": [1]}')
    with pytest.raises(ValueError, match="not a 'vea-layer-profile/1' file"):
        LayerProfile.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="does not exist"):
        LayerProfile.from_json(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="invalid for 8 layers"):
        LayerProfile("m", 8, (8,), profile.auroc, profile.ap, profile.ndcg, 1, 0)


def test_plot_profile_marks_selected_layers():
    profile = _toy_profile()
    image = plot_profile(profile, width=640, height=420)
    assert image.size == (640, 420) and image.mode == "RGB"
    pixels = np.asarray(image)
    # plot area x in [60, 620): 8 layers of 70 px; sample a column in the lower part of each band
    fill = [bool((pixels[300:350, 60 + 70 * layer + 35] == SELECTED_FILL).all(-1).any()) for layer in range(8)]
    assert fill == [layer in profile.layers for layer in range(8)]
    assert plot_profile(profile, width=640).tobytes() == image.tobytes()  # deterministic


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_profile_then_eval_with_the_profile(tiny_model_dirs, tmp_path, caplog, capsys):
    from vea_engine.cli import main

    manifest = write_dataset(tmp_path / "data", 4, seed=9, size=(224, 224))
    rows = manifest.read_text().splitlines()
    no_boxes = json.loads(rows[1])
    del no_boxes["boxes"]
    rows[1] = json.dumps({**no_boxes, "id": "no-boxes"})
    manifest.write_text("\n".join(rows) + "\n")
    model = str(tiny_model_dirs["llava"])
    out, plot = tmp_path / "profile.json", tmp_path / "profile.png"
    with caplog.at_level(logging.WARNING):
        code = main(
            [
                "profile",
                "--model",
                model,
                "--data",
                str(manifest),
                "--out",
                str(out),
                "--plot",
                str(plot),
                "--top-fraction",
                "0.3",
                "--dtype",
                "float32",
            ]
        )
    assert code == 0
    assert f"{manifest}:2: skipped: 'boxes' is missing" in caplog.text  # line number of the bad row
    printed = json.loads(capsys.readouterr().out)
    profile = LayerProfile.from_json(out)
    assert printed["layers"] == list(profile.layers) and len(profile.layers) == 2
    assert profile.n_samples + profile.n_skipped == 3 and profile.model_name == model
    assert plot.is_file() and plot.stat().st_size > 1000

    preds = tmp_path / "preds.jsonl"
    code = main(
        eval_args(model, manifest, "base,vea", preds, "--profile", out, "--max-new-tokens", 2, "--dtype", "float32")
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "dANLS" in table and "\nvea " in table
    vea_rows = [json.loads(line) for line in preds.read_text().splitlines() if '"method": "vea"' in line]
    assert len(vea_rows) == 4  # eval does not need boxes: all 4 rows
    assert all(r["layers"] == list(profile.layers) and r["layer_source"] == f"profile:{out}" for r in vea_rows)
    code = main(eval_args(model, manifest, "vea", preds, "--profile", tmp_path / "missing.json"))
    assert code == 2 and "does not exist" in caplog.text
