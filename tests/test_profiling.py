"""Layer profiling: evidence labels by hand, planted layers found, AUROC equal to sklearn on eager rows."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from conftest import ENGINE_FAMILIES
from planting import planted
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score

from vea_engine.attribution import extract_attention, model_inputs, render_canvases
from vea_engine.config import build_prompt
from vea_engine.data import load_manifest
from vea_engine.geometry import GridPart, ImageGeometry
from vea_engine.layers import LayerSelection
from vea_engine.profiling import (
    SELECTED_FILL,
    LayerProfile,
    evidence_labels,
    n_top_layers,
    plot_profile,
    profile_layers,
)
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
    g = ImageGeometry.single_grid(rows, cols, (rows * cell, cols * cell), (rows * cell, cols * cell),
                                  (0, 0, cols * cell, rows * cell))
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


def test_n_top_layers_matches_paper_presets():
    # ceil(10 % of the depth), from the paper's pre-profiled checkpoints (32 -> 4, 28 -> 3, 64 -> 7, ...).
    assert [n_top_layers(n) for n in (32, 40, 28, 64, 34, 62)] == [4, 4, 3, 7, 4, 7]
    assert n_top_layers(30) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
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
    canvases, boxes, originals = render_canvases(vlm, [sample.image])
    inputs = model_inputs(vlm, canvases, [build_prompt(sample.question, "qa")])
    geometry = vlm.adapter.geometry(inputs, 0, originals[0], boxes[0])
    positions = vlm.adapter.image_token_positions(inputs["input_ids"])[0]
    labels = evidence_labels(geometry, sample.boxes, rule)
    return positions[labels].tolist(), labels, inputs, positions


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
    top = sorted(np.argsort(-np.mean(expected["auroc"], axis=0), kind="stable")[:1].tolist())
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
    return LayerProfile("org/toy-model", n, layers, auroc, tuple(0.3 for _ in range(n)), tuple(0.6 for _ in range(n)),
                        10, 2)


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
        code = main(["profile", "--model", model, "--data", str(manifest), "--out", str(out), "--plot", str(plot),
                     "--top-fraction", "0.3", "--dtype", "float32"])
    assert code == 0
    assert f"{manifest}:2: skipped: 'boxes' is missing" in caplog.text  # line number of the bad row
    printed = json.loads(capsys.readouterr().out)
    profile = LayerProfile.from_json(out)
    assert printed["layers"] == list(profile.layers) and len(profile.layers) == 2
    assert profile.n_samples + profile.n_skipped == 3 and profile.model_name == model
    assert plot.is_file() and plot.stat().st_size > 1000

    preds = tmp_path / "preds.jsonl"
    code = main(["eval", "--model", model, "--data", str(manifest), "--methods", "base,vea", "--profile", str(out),
                 "--max-new-tokens", "2", "--out", str(preds), "--dtype", "float32"])
    assert code == 0
    table = capsys.readouterr().out
    assert "dANLS" in table and "\nvea " in table
    vea_rows = [json.loads(line) for line in preds.read_text().splitlines() if '"method": "vea"' in line]
    assert len(vea_rows) == 4  # eval does not need boxes: all 4 rows
    assert all(r["layers"] == list(profile.layers) and r["layer_source"] == f"profile:{out}" for r in vea_rows)
    code = main(["eval", "--model", model, "--data", str(manifest), "--methods", "vea", "--profile",
                 str(tmp_path / "missing.json"), "--out", str(preds)])
    assert code == 2 and "does not exist" in caplog.text
