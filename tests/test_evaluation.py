"""Evaluation: resumable JSONL, exact summaries, methods equal to the pipeline, CLI, accelerate data parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, continuations, eval_args
from vea_engine.data import load_manifest
from vea_engine.distributed import shard
from vea_engine.evaluation import evaluate, score
from vea_engine.layers import LayerSelection
from vea_engine.predictions import merge_outputs, rank_path, read_rows
from vea_engine.summary import summarize
from vea_engine.synthetic import write_dataset

FAMILY = "llava"  # the fastest tiny model
METHODS = ("base", "inst", "vea")
LAYERS = LayerSelection((2, 4), "custom", 6)
TOKENS = 4

pytestmark = pytest.mark.usefixtures("one_thread")


class Stop(Exception):
    """Raised from a progress callback to interrupt a run."""


def _stop_after(n: int):
    def progress(done: int, total: int) -> None:
        if done == n:
            raise Stop(n)

    return progress


@pytest.fixture(scope="module")
def data50(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("eval-data"), 50, seed=5, size=(224, 224))


@pytest.fixture(scope="module")
def samples50(data50):
    samples, bad = load_manifest(data50)
    assert not bad and len(samples) == 50
    return samples


@pytest.fixture(scope="module")
def full_run(tiny_vlms, samples50, tmp_path_factory) -> Path:
    """An uninterrupted evaluation of all 50 samples (the reference for resumed runs)."""
    out = tmp_path_factory.mktemp("eval-full") / "full.jsonl"
    return evaluate(tiny_vlms[FAMILY], samples50, METHODS, out, layers=LAYERS, max_new_tokens=TOKENS)


def _pairs(rows):
    return [(row["id"], row["method"]) for row in rows]


# ---------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------


def test_shard_is_a_strided_partition():
    items = list(range(11))
    shards = [shard(items, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(x for part in shards for x in part) == items
    assert shard(items, 0, 1) == items
    with pytest.raises(ValueError, match="rank must be"):
        shard(items, 3, 3)
    with pytest.raises(ValueError, match="world size"):
        shard(items, 0, 0)


def _row(sid, method, em, f1, anls, vqa=None, index=0):
    return {
        "index": index,
        "id": sid,
        "method": method,
        "prediction": "x",
        "answers": ["x"],
        "em": em,
        "f1": f1,
        "anls": anls,
        "vqa_acc": vqa,
    }


def test_summarize_hand_computed(tmp_path):
    rows = [
        _row("s1", "base", 1.0, 1.0, 1.0, 1.0),
        _row("s2", "base", 0.0, 0.5, 0.25),
        _row("s3", "base", 0.0, 0.0, 0.0, 0.0),
        _row("s1", "vea", 1.0, 1.0, 1.0),
        _row("s2", "vea", 1.0, 1.0, 1.0),  # vea has no s3 row: deltas are over s1, s2 only
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize(path)
    base, vea = summary.method("base"), summary.method("vea")
    assert (base.n, base.em, base.f1, base.anls, base.vqa_acc) == (
        3,
        pytest.approx(100 / 3),
        50.0,
        pytest.approx(125 / 3),
        50.0,
    )
    assert (base.delta_em, base.delta_f1, base.delta_anls) == (0.0, 0.0, 0.0)
    assert (vea.n, vea.em, vea.f1, vea.anls, vea.vqa_acc) == (2, 100.0, 100.0, 100.0, None)
    assert (vea.delta_em, vea.delta_f1, vea.delta_anls) == (50.0, 25.0, 37.5)
    text = str(summary).splitlines()
    assert text[1].split() == ["method", "n", "EM", "F1", "ANLS", "VQA", "dEM", "dF1", "dANLS"]
    assert text[3].split() == ["base", "3", "33.3", "50.0", "41.7", "50.0", "+0.0", "+0.0", "+0.0"]
    assert text[4].split() == ["vea", "2", "100.0", "100.0", "100.0", "-", "+50.0", "+25.0", "+37.5"]
    with pytest.raises(KeyError, match="inst"):
        summary.method("inst")


def test_score_uses_the_metric_definitions():
    assert score("The code is 4821.", ["4821"]) == {"em": 1.0, "f1": 0.5, "anls": 0.0, "vqa_acc": None}
    # leave-one-out over 4 references: 3 x min(1, 2/3) + 1 x min(1, 3/3), averaged
    assert score("4821", ["4821", "4821", "4821", "1234"])["vqa_acc"] == pytest.approx(0.75)


def test_read_rows_torn_tail_and_corrupt_middle(tmp_path):
    path = tmp_path / "p.jsonl"
    good = json.dumps(_row("s1", "base", 1, 1, 1)) + "\n"
    path.write_text(good + '{"id": "s2", "meth')
    assert _pairs(read_rows(path)) == [("s1", "base")]
    assert path.read_text().endswith("meth")  # reading alone leaves the file as it is
    read_rows(path, repair=True)
    assert path.read_text() == good
    path.write_text(good + "not json\n" + good)
    with pytest.raises(ValueError, match=r"p\.jsonl:2: not a JSON line"):
        read_rows(path)
    assert read_rows(tmp_path / "missing.jsonl") == []


def test_merge_outputs_dedupes_sorts_and_removes_rank_files(tmp_path):
    out = tmp_path / "preds.jsonl"
    rows = {r: [] for r in range(2)}
    for i, sid in enumerate(["a", "b", "c"]):
        for method in ("vea", "base"):
            rows[i % 2].append(_row(sid, method, 0, 0, 0, index=i))
    rows[1].append(rows[0][0])  # a duplicate (a, vea) in another rank file
    for r, rank_rows in rows.items():
        rank_path(out, r).write_text("".join(json.dumps(x) + "\n" for x in reversed(rank_rows)))
    merge_outputs(out, ["a", "b", "c"])
    assert _pairs(read_rows(out)) == [(s, m) for s in "abc" for m in ("base", "vea")]
    assert not rank_path(out, 0).exists() and not rank_path(out, 1).exists()


# ---------------------------------------------------------------------------------------------
# evaluate on a tiny model
# ---------------------------------------------------------------------------------------------


def test_eval_50_samples_rows_and_summary(full_run, samples50, capsys):
    rows = read_rows(full_run)
    assert _pairs(rows) == [(s.id, m) for s in samples50 for m in METHODS]  # complete, unique, canonical order
    for row in rows:
        assert {k: row[k] for k in ("em", "f1", "anls", "vqa_acc")} == score(row["prediction"], row["answers"])
        assert row["layers"] == (None if row["method"] in ("base", "inst") else [2, 4])
    summary = summarize(full_run)
    print(summary)
    printed = capsys.readouterr().out
    assert [r.method for r in summary.rows] == list(METHODS) and all(r.n == 50 for r in summary.rows)
    assert all(f"\n{m} " in printed for m in METHODS)


def test_eval_interrupted_and_resumed_equals_uninterrupted(tiny_vlms, samples50, full_run, tmp_path):
    vlm = tiny_vlms[FAMILY]
    out = tmp_path / "part.jsonl"

    def run(progress=None):
        return evaluate(vlm, samples50, METHODS, out, layers=LAYERS, max_new_tokens=TOKENS, progress=progress)

    with pytest.raises(Stop):
        run(_stop_after(37))  # mid-sample: 12 samples done, the 13th has base only
    assert _pairs(read_rows(out)) == _pairs(read_rows(full_run))[:37]
    with open(out, "ab") as f:  # a crash in the middle of writing a line
        f.write(b'{"index": 12, "id": "synthetic-5-00012", "meth')
    with pytest.raises(Stop):
        run(_stop_after(80))  # counts include the 37 rows already on disk
    assert _pairs(read_rows(out)) == _pairs(read_rows(full_run))[:80]
    run()
    assert out.read_bytes() == full_run.read_bytes()
    calls = []
    run(lambda done, total: calls.append(done))  # finished: nothing recomputed, file unchanged
    assert calls == [] and out.read_bytes() == full_run.read_bytes()


def test_eval_refuses_to_mix_settings_and_bad_arguments(tiny_vlms, samples50, tmp_path):
    vlm = tiny_vlms[FAMILY]
    out = evaluate(vlm, samples50[:1], ("base", "vea"), tmp_path / "p.jsonl", layers=LAYERS, max_new_tokens=TOKENS)
    with pytest.raises(ValueError, match="max_new_tokens"):
        evaluate(vlm, samples50[:2], ("base",), out, layers=LAYERS, max_new_tokens=TOKENS + 1)
    with pytest.raises(ValueError, match="layers=\\[2, 4\\]"):
        evaluate(vlm, samples50[:2], ("vea",), out, layers=(1, 2), max_new_tokens=TOKENS)
    with pytest.raises(ValueError, match="methods must be"):
        evaluate(vlm, samples50[:1], ("base", "vea_magic"), out)
    with pytest.raises(ValueError, match="occurs more than once"):
        evaluate(vlm, [samples50[0], samples50[0]], ("base",), tmp_path / "q.jsonl", layers=LAYERS)
    assert len(read_rows(out)) == 2  # nothing was appended by the refused runs


# ---------------------------------------------------------------------------------------------
# CLI and data parallel (subprocesses)
# ---------------------------------------------------------------------------------------------


def _env(**extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow  # subprocesses: tens of seconds
def test_cli_eval_killed_and_resumed(tiny_model_dirs, data50, full_run, tmp_path):
    manifest = data50.parent / "with_bad_row.jsonl"
    manifest.write_text(data50.read_text() + '{"id": "broken", "image": "images/00000.png", "answers": ["1"]}\n')
    out = tmp_path / "cli.jsonl"
    args = eval_args(tiny_model_dirs[FAMILY], manifest, ",".join(METHODS), out, "--layers", "2,4",
                     "--max-new-tokens", TOKENS, "--limit", 20)  # fmt: skip
    cmd = [sys.executable, "-m", "vea_engine", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count_lines(out) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup, possibly mid-line
    proc.communicate()
    killed_at = _count_lines(out)
    assert 5 <= killed_at < 60, f"the run was not killed mid-way ({killed_at} lines)"

    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{manifest}:51: skipped: 'question' is missing" in done.stderr  # bad rows: logged with line numbers
    assert f"{killed_at} already done" in done.stderr  # complete lines kept, a torn one dropped
    assert "dANLS" in done.stdout and "\nvea " in done.stdout
    reference = [r for r in read_rows(full_run) if r["index"] < 20]
    assert read_rows(out) == reference


@pytest.mark.slow  # subprocesses: tens of seconds
def test_accelerate_two_processes_equal_one(tiny_vlms, tiny_model_dirs, samples50, data50, tmp_path):
    methods = ("base", "vea")
    single = tmp_path / "single.jsonl"
    evaluate(tiny_vlms[FAMILY], samples50[:6], methods, single, layers=LAYERS, max_new_tokens=TOKENS)
    out = tmp_path / "dp.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "vea_engine",
        *eval_args(tiny_model_dirs[FAMILY], data50, ",".join(methods), out, "--layers", "2,4", "--max-new-tokens",
                   TOKENS, "--limit", 6),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=REPO, env=_env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "eval rank 1/2: 3 samples" in done.stderr and "eval rank 0/2: 3 samples" in done.stderr
    assert done.stdout.count("dANLS") == 1  # only rank 0 prints the table
    assert out.read_bytes() == single.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp.jsonl", "single.jsonl"]  # no rank files left


def test_eval_in_batches_gives_every_row_and_the_one_by_one_predictions(tiny_vlms, samples50, full_run, tmp_path):
    out = tmp_path / "batched.jsonl"
    evaluate(tiny_vlms[FAMILY], samples50[:10], METHODS, out, layers=LAYERS, max_new_tokens=TOKENS, batch_size=4)
    rows = read_rows(out)
    assert _pairs(rows) == [(s.id, m) for s in samples50[:10] for m in METHODS]
    alone = {(r["id"], r["method"]): r["prediction"] for r in read_rows(full_run)}
    assert {(r["id"], r["method"]): r["prediction"] for r in rows} == {key: alone[key] for key in _pairs(rows)}
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        evaluate(tiny_vlms[FAMILY], samples50[:2], METHODS, tmp_path / "x.jsonl", layers=LAYERS, batch_size=0)


def test_eval_decodes_methods_together_only_in_batches(tiny_vlms, samples50, tmp_path):
    """batch_size 1 answers every method alone (exactly as a single run); larger batches decode two at a time."""
    vlm = tiny_vlms[FAMILY]
    with continuations(vlm) as alone:
        evaluate(vlm, samples50[:2], ["base", "vea"], tmp_path / "one.jsonl", layers=LAYERS, max_new_tokens=TOKENS)
    with continuations(vlm) as batched:
        evaluate(vlm, samples50[:2], ["base", "vea"], tmp_path / "two.jsonl", layers=LAYERS, max_new_tokens=TOKENS,
                 batch_size=2)  # fmt: skip
    assert set(alone) <= {1}  # only the base answer goes on from its attribution pass, one sample at a time
    assert max(batched) > 2  # base and vea of both samples (same size) as one batch


def test_eval_compares_every_method_in_one_run(tiny_vlms, samples50, tmp_path, capsys):
    from vea_engine.methods import METHODS as ALL

    out = evaluate(tiny_vlms["qwen2_5_vl"], samples50[:2], list(ALL), tmp_path / "all.jsonl", layers=(1, 2),
                   max_new_tokens=2)  # fmt: skip
    assert _pairs(read_rows(out)) == [(s.id, m) for s in samples50[:2] for m in ALL]
    print(summarize(out))
    printed = capsys.readouterr().out
    assert all(f"\n{m} " in printed for m in ("base", "relatt", "grad", "zoom", "vea_zoom"))
