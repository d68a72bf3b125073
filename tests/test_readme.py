"""Every code example of the README runs, against tiny models and a real ComfyUI server.

Examples are read from README.md itself. Hub ids become tiny checkpoints of the same
family, ``cuda``/``bfloat16`` become ``cpu``/``float32``, data files become synthetic
ones, and the server address becomes the test server's; nothing else is changed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.comfy_harness import DEFAULT_VERSION
from tests.helpers import REPO, cli

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
HUB_QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCKS if lang == language]


def commands(prefix: str) -> list[list[str]]:
    """Command lines of the bash examples that start with ``prefix`` (continuations joined)."""
    found = []
    for code in blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(prefix) and "..." not in line:  # "..." lines vary a full example (GPU options)
                found.append(shlex.split(line))
    return found


def test_the_readme_has_the_examples_this_file_runs():
    assert len(blocks("python")) == 2 and len(blocks("json")) == 1
    assert len(commands(".venv/bin/python -m vea_engine run")) == 1
    assert len(commands("python -m vea_engine profile")) == 1 and len(commands("python -m vea_engine eval")) == 1
    assert len(commands("curl")) == 1


def _substituted(argv: list[str], files: dict[str, str], models: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        arg = models.get(arg, arg)
        arg = files.get(arg, arg)
        out.append({"cuda": "cpu", "bfloat16": "float32"}.get(arg, arg))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from vea_engine.synthetic import write_dataset

    root = tmp_path_factory.mktemp("readme")
    manifest = write_dataset(root / "data", n=3, seed=3, size=(192, 160))
    Image.fromarray(np.full((150, 200, 3), 200, np.uint8)).save(root / "receipt.jpg")
    return root, manifest


def test_cli_examples_run(tiny_model_dirs, data, capsys, one_thread):
    root, manifest = data
    models = {HUB_QWEN: str(tiny_model_dirs["qwen2_5_vl"])}
    files = {"receipt.jpg": str(root / "receipt.jpg"), "cot.jsonl": str(manifest), "textvqa.jsonl": str(manifest),
             "qwen_profile.json": str(root / "profile.json"), "qwen_profile.png": str(root / "profile.png"),
             "preds.jsonl": str(root / "preds.jsonl")}  # fmt: skip
    (run,) = commands(".venv/bin/python -m vea_engine run")
    code, out = cli(capsys, *_substituted(run[3:], files, models), "--max-new-tokens", "2", "--out", str(root / "o"))
    assert code == 0 and json.loads(out)["layer_source"] == "fallback:all"
    (profile,) = commands("python -m vea_engine profile")
    code, out = cli(capsys, *_substituted(profile[3:], files, models))
    assert code == 0 and (root / "profile.json").is_file() and (root / "profile.png").is_file()
    (evaluate,) = commands("python -m vea_engine eval")
    code, out = cli(capsys, *_substituted(evaluate[3:], files, models), "--max-new-tokens", "2")
    methods = evaluate[evaluate.index("--methods") + 1].split(",")
    assert len(methods) == 11 and all(f"\n{m} " in out for m in methods)  # every method of the table, one table
    assert len((root / "preds.jsonl").read_text().splitlines()) == 3 * len(methods)


def test_manifest_example_loads(tmp_path):
    from vea_engine.data import load_manifest

    (row,) = blocks("json")
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((100, 240, 3), np.uint8)).save(tmp_path / "images" / "q17.png")
    (tmp_path / "m.jsonl").write_text(row)
    (sample,), bad = load_manifest(tmp_path / "m.jsonl")
    assert bad == []
    assert (sample.id, sample.answers, sample.boxes) == ("q17", ("4821",), ((120.0, 40.0, 210.0, 72.0),))


def test_engine_example_runs(tiny_model_dirs, one_thread):
    engine = next(code for code in blocks("python") if "load_vlm" in code)
    code = engine.replace(HUB_QWEN, str(tiny_model_dirs["qwen2_5_vl"])).replace('"cuda"', '"cpu"')
    code = code.replace('"bfloat16"', '"float32"')
    scope = {"image": Image.fromarray(np.full((150, 200, 3), 90, np.uint8))}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    assert (
        scope["evidence"].shape == scope["highlighted"].shape[:3]
        and scope["highlighted"].dtype.is_floating_point is False
    )
    assert set(scope["result"].answers) == {"base", "vea"} and printed.getvalue().startswith("[")


def test_http_examples_run(comfy_servers):
    server = comfy_servers(DEFAULT_VERSION)  # the shared server; the examples are plain HTTP, one version is enough
    http = next(code for code in blocks("python") if "urllib" in code)
    code = http.replace("http://127.0.0.1:8188", server.url)
    code = code.replace('"workflows/api/vea_compare.json"', repr(str(REPO / "workflows/api/vea_compare.json")))
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert '"text"' in printed.getvalue() or "'text'" in printed.getvalue()
    (curl,) = [code for code in blocks("bash") if code.startswith("curl")]
    line = curl.split("\n# ")[0].replace("http://127.0.0.1:8188", server.url)  # the command, without its comment
    answer = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(answer.stdout)["node_errors"] == {}, answer.stdout + answer.stderr
    server.wait(json.loads(answer.stdout)["prompt_id"], timeout=120)
