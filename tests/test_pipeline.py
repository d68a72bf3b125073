"""Answers, the whole pipeline, delegates (geometry checked by hand) and the CLI."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import cli, cli_json, run_cli, vea_run_args
from vea_engine.answering import answer
from vea_engine.attribution import evidence_map, extract_attention
from vea_engine.config import build_prompt
from vea_engine.geometry import Frame, remap_mask
from vea_engine.inputs import model_inputs, render_canvases
from vea_engine.layers import LayerSelection
from vea_engine.mask import blend
from vea_engine.methods import METHODS, MethodRunner
from vea_engine.pipeline import align_mask, run_vea

pytestmark = pytest.mark.usefixtures("one_thread")


def _greedy_oracle(vlm, image, question, steps):
    """Token-by-token argmax over full forward passes (no cache, no generate())."""
    inputs = dict(model_inputs(vlm, [np.asarray(image.convert("RGB"))], [build_prompt(question)]))
    ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
    out = []
    with torch.inference_mode():
        for _ in range(steps):
            logits = vlm.model(input_ids=ids, attention_mask=mask, use_cache=False, **inputs).logits[:, -1]
            token = logits.argmax(-1, keepdim=True)
            if token.item() == vlm.processor.tokenizer.eos_token_id:
                break
            out.append(token.item())
            ids = torch.cat([ids, token], 1)
            mask = torch.cat([mask, torch.ones_like(token)], 1)
            for key, value in inputs.items():  # per-token side inputs (e.g. multimodal token types) grow too
                if isinstance(value, torch.Tensor) and value.shape[:2] == (1, ids.shape[1] - 1):
                    inputs[key] = torch.cat([value, torch.zeros_like(value[:, :1])], 1)
    return vlm.processor.tokenizer.decode(out, skip_special_tokens=True).strip()


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_answer_is_greedy_and_one_per_image(family, tiny_vlms, scene_image):
    vlm = tiny_vlms[family]
    flipped = scene_image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    answers = answer(vlm, [scene_image, flipped], ["What is written?", "And here, what colour?"], max_new_tokens=6)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert answers[0] == _greedy_oracle(vlm, scene_image, "What is written?", 6)
    assert answers[1] == _greedy_oracle(vlm, flipped, "And here, what colour?", 6)
    # a single question is used for the whole batch; a batch of one still returns a list
    assert len(answer(vlm, [scene_image, flipped], "What?", max_new_tokens=2)) == 2
    assert len(answer(vlm, scene_image, "What?", max_new_tokens=2)) == 1


def test_answer_progress_is_called_and_can_cancel(tiny_vlms, scene_image):
    seen = []
    answer(tiny_vlms["llava"], [scene_image], "What?", max_new_tokens=4, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][1] == 4 and [d for d, _ in seen] == sorted(d for d, _ in seen)

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done >= 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        answer(tiny_vlms["llava"], [scene_image], "What?", max_new_tokens=20, progress=cancel)
    assert len(answer(tiny_vlms["llava"], [scene_image], "What?", max_new_tokens=2)) == 1


def _reference_highlight(canvas: torch.Tensor, evidence: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """The reference code's highlight of a uint8 canvas, in numpy: float32 gain, clip, cast (truncation)."""
    levels = np.rint(canvas.numpy() * 255).astype(np.float32)  # [B, H, W, 3] the uint8 canvas
    gain = (alpha + (1.0 - alpha) * evidence.numpy().astype(np.float32))[..., None]
    return torch.from_numpy(np.clip(levels * gain, 0, 255).astype(np.uint8)).float() / 255


def test_run_vea_matches_the_stages(tiny_vlms, scene_image):
    vlm = tiny_vlms["qwen2_5_vl"]
    result = run_vea(
        vlm, [scene_image], "What is on the sign?", layers=[2, 4], methods=("base", "inst", "vea"), max_new_tokens=3
    )
    attention = extract_attention(vlm, [scene_image], "What is on the sign?", [2, 4])
    torch.testing.assert_close(result.evidence, evidence_map(attention))
    assert torch.equal(result.highlighted, _reference_highlight(attention.canvas, result.evidence))
    # truncation, not rounding: never brighter than the float blend, and at most one level darker
    difference = blend(attention.canvas, result.evidence) - result.highlighted
    assert difference.min() >= 0 and difference.max() < 1 / 255 + 1e-6 and difference.max() > 0
    assert result.evidence.min() == 0 and result.evidence.max() == 1
    assert set(result.answers) == {"base", "inst", "vea"}
    assert result.answers["vea"] == answer(vlm, result.highlighted, "What is on the sign?", "vea", max_new_tokens=3)
    # the highlighted image keeps its size through the processor: answering it sees the same canvas
    assert result.highlighted.shape[1:3] == attention.canvas.shape[1:3]


def test_highlighted_canvas_is_not_resized_again(tiny_vlms, scene_image):
    for family in ("qwen2_5_vl", "llava"):
        vlm = tiny_vlms[family]
        attention = extract_attention(vlm, [scene_image], "What?", [1])
        again = extract_attention(vlm, attention.canvas, "What?", [1])
        assert again.geometry.canvas_hw == attention.geometry.canvas_hw
        assert (again.canvas - attention.canvas).abs().max() <= 1 / 255 + 1e-6


def test_delegate_geometry_hand_computed():
    """Qwen-style canvas (plain resize) -> LLaVA-style canvas (shortest side 84, centre crop) of a 200x100 original."""
    qwen = Frame(original_hw=(100, 200), canvas_hw=(56, 112), box=(0, 0, 200, 100))
    # LLaVA: scale 84/100, resized 168x84, crop 84x84 from x=42 -> original x in [50, 150)
    llava = Frame(original_hw=(100, 200), canvas_hw=(84, 84), box=(50, 0, 150, 100))
    mask = torch.zeros(1, 56, 112)
    mask[:, :, 56:] = 1.0  # right half of the original (x >= 100)
    out = remap_mask(mask, qwen, llava)[0]
    # on the LLaVA canvas, original x = 100 is canvas x = 42: left half 0, right half 1
    assert out[:, :41].max() < 1e-6 and out[:, 43:].min() > 1 - 1e-6
    back = remap_mask(out[None], llava, None)[0]  # onto the 200x100 original; outside the crop is the fill (0)
    assert back.shape == (100, 200)
    assert back[:, :48].max() == 0 and back[:, 152:].max() == 0 and back[:, 105:148].min() > 1 - 1e-6


def test_delegate_qwen_mask_llava_answer(tiny_vlms, scene_image):
    qwen, llava = tiny_vlms["qwen2_5_vl"], tiny_vlms["llava"]
    result = run_vea(llava, [scene_image], "What is it?", layers=[1, 3], delegate=qwen, max_new_tokens=2)
    llava_canvas_hw = extract_attention(llava, [scene_image], "What is it?", [1]).geometry.canvas_hw
    assert result.evidence.shape[1:] == llava_canvas_hw == result.highlighted.shape[1:3]
    assert result.attention.model_name == qwen.name
    expected, image = align_mask(evidence_map(result.attention), result.attention.geometry, [scene_image], llava)
    torch.testing.assert_close(result.evidence, expected)
    assert torch.equal(result.highlighted, _reference_highlight(image, expected))
    with pytest.raises(ValueError, match="pass the images the mask model saw"):
        align_mask(evidence_map(result.attention), result.attention.geometry, [scene_image.resize((50, 50))], llava)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava_next"])
def test_cli_run_writes_images_and_json(family, tiny_model_dirs, vlm_of, tmp_path, scene_image, capsys):
    """``vea_engine.cli.main(["run", ...])`` in-process: the JSON summary and both images, at the canvas size.

    The command is the same for every family: one native-resolution canvas and one tiled canvas here, LLaVA's
    cropped one in the fresh process below. Every family runs VEA end to end through the real server
    (``tests/test_comfy_server.py``).
    """
    image_path = tmp_path / "scene.png"
    scene_image.save(image_path)
    layers = vlm_of(family).layer_kinds.attention[1:3]  # 1, 2 on a plain decoder; a hybrid one's softmax layers
    args = vea_run_args(tiny_model_dirs[family], image_path, tmp_path / "out")
    args[args.index("--layers") + 1] = ",".join(map(str, layers))
    summary = cli_json(capsys, *args)
    assert summary["layers"] == list(layers) and isinstance(summary["base"], str) and isinstance(summary["vea"], str)
    canvas_hw = render_canvases(vlm_of(family), [scene_image])[0].frame.canvas_hw
    highlighted, heat = Image.open(summary["highlighted"]), Image.open(summary["heatmap"])
    assert highlighted.size == heat.size == canvas_hw[::-1]


def test_cli_run_decodes_answers_alone_unless_joint_decode(tiny_model_dirs, tmp_path, scene_image, capsys, monkeypatch):
    """The default and ``--separate-answers`` decode each answer on its own (the reference's way); ``--joint-decode``
    decodes base and VEA as one batch, with the same answers here (float32)."""
    from vea_engine import cli, pipeline

    asked = []
    real = pipeline.run_vea
    monkeypatch.setattr(pipeline, "run_vea", lambda *a, **k: asked.append(k["joint_decode"]) or real(*a, **k))
    image_path = tmp_path / "scene.png"
    scene_image.save(image_path)
    args = vea_run_args(tiny_model_dirs["qwen2_5_vl"], image_path, tmp_path / "out")
    alone = cli_json(capsys, *args)
    separate = cli_json(capsys, *args, "--separate-answers")
    together = cli_json(capsys, *args, "--joint-decode")
    assert asked == [False, False, True]
    assert (alone["base"], alone["vea"]) == (separate["base"], separate["vea"]) == (together["base"], together["vea"])
    with pytest.raises(SystemExit) as refused:
        cli.main([*map(str, args), "--joint-decode", "--separate-answers"])
    assert refused.value.code == 2


def test_cli_refuses_a_missing_image_with_exit_code_2(tiny_model_dirs, tmp_path, capsys, caplog):
    args = vea_run_args(tiny_model_dirs["llava"], "/nope.png", tmp_path / "out")
    with caplog.at_level(logging.ERROR, logger="vea_engine"):
        code, out = cli(capsys, *args)
    assert code == 2 and out == ""
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "vea_engine"]
    assert len(errors) == 1 and "no image file at '/nope.png'" in errors[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.slow  # a fresh Python and torch import: seconds before the first line runs
def test_cli_entry_point_in_a_fresh_process(tiny_model_dirs, tmp_path, scene_image):
    """``python -m vea_engine run``: exit code 0, the JSON alone on stdout, logging on stderr (the one subprocess)."""
    image_path = tmp_path / "scene.png"
    scene_image.save(image_path)
    done = run_cli(*vea_run_args(tiny_model_dirs["llava"], image_path, tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["layers"] == [1, 2] and Image.open(summary["highlighted"]).size == (84, 84)  # shortest side 84, crop
    assert re.search(r"^INFO vea_engine[.\w]*: ", done.stderr, re.MULTILINE), done.stderr  # the log, on stderr


def test_method_table_runs_the_stages(tiny_vlms, scene_image):
    """Every method of the table, executed by the runner, equals its stages called by hand."""
    vlm, question = tiny_vlms["qwen2_5_vl"], "What is on the sign?"
    runner = MethodRunner(vlm, [scene_image], question, LayerSelection((1, 3), "custom", 6), max_new_tokens=2)
    for method in METHODS.values():
        if method.signal != "attention" or method.zoom:
            continue  # other signals and the zoom crops: tests/test_reuse.py, against their own stages
        if not method.highlight:
            assert runner.answer(method) == answer(vlm, [scene_image], question, method.prompt, max_new_tokens=2)
            continue
        layers = (1, 3) if method.layers == "selected" else tuple(range(vlm.num_layers))
        attention = extract_attention(vlm, [scene_image], question, layers)
        expected = evidence_map(attention, apply_denoise=method.denoise, apply_smooth=method.smooth)
        evidence, highlighted = runner.highlighted(method)
        assert torch.equal(evidence, expected), method.name
        assert torch.equal(highlighted.float() / 255, _reference_highlight(attention.canvas, expected)), method.name
        assert runner.answer(method) == answer(vlm, highlighted, question, method.prompt, max_new_tokens=2)
    assert [m.name for m in METHODS.values() if m.highlight and m.prompt == "qa"] == ["vea_no_hint"]
    assert {m.name for m in METHODS.values() if not (m.denoise and m.smooth)} == {"vea_no_denoise", "vea_no_smooth"}
