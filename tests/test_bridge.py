"""ComfyUI's memory manager and an offloaded model (nodes/bridge.py), with ComfyUI's real modules.

A model spread over CPU and disk by a memory budget must show the manager only what
lives on its load device: the reported size is the bytes of those parameters, the
manager never walks the offloaded (meta) weights, and a load -> unload -> load round
trip through ``comfy.model_management`` leaves the answers unchanged (oracle: the same
checkpoint loaded whole). Runs in a fresh process: ComfyUI's modules are imported the
way a server imports them, with the pack as a package.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.comfy_harness import REPO, comfyui_dir

pytestmark = pytest.mark.comfy

SCRIPT = """
import importlib.util, json, os, sys
comfy_dir, pack_dir, model_dir, temp_dir, budget = sys.argv[1:6]
sys.path.insert(0, comfy_dir)
spec = importlib.util.spec_from_file_location("vea_pack", pack_dir + "/__init__.py",
                                              submodule_search_locations=[pack_dir])
pack = importlib.util.module_from_spec(spec); sys.modules["vea_pack"] = pack; spec.loader.exec_module(pack)
import torch
from comfy.cli_args import args
args.cpu = not torch.cuda.is_available()  # as `main.py --cpu` on a machine without a GPU
import comfy.model_management as mm
import folder_paths
folder_paths.set_temp_directory(temp_dir)
from PIL import Image
from vea_pack.nodes.bridge import load_handle
from vea_pack.vea_engine.answering import answer

torch.set_num_threads(1)
image = Image.new("RGB", (200, 150), (90, 120, 200))
image.paste((250, 30, 30), (120, 40, 170, 80))
ask = lambda vlm: answer(vlm, [image], "What is written?", max_new_tokens=6)[0]
whole = load_handle(model_dir, "float32", "cpu", "sdpa")
spread = load_handle(model_dir, "float32", "cpu", "sdpa", max_memory="cpu=" + budget)
model = spread.vlm.model
cpu_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type == "cpu")
cpu_bytes += sum(b.numel() * b.element_size() for b in model.buffers() if b.device.type == "cpu")
holder = spread.patcher.model
names = {id(m): n for n, m in model.named_modules()}
out = {
    "device_map": spread.vlm.device_map,
    "size": spread.patcher.model_size(),
    "cpu_bytes": cpu_bytes,
    "total_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
    "meta_in_holder": sum(p.device.type == "meta" for p in holder.parameters()),
    "holder_parts": sorted(names[id(m)] for m in holder.resident),
    "answer_whole": ask(whole.ready()),
    "answer_1": ask(spread.ready()),
    "loaded": spread.patcher.loaded_size(),
}
mm.unload_all_models()
out["unloaded"] = spread.patcher.loaded_size()
out["answer_2"] = ask(spread.ready())
out["offload_folder"] = os.path.isdir(os.path.join(temp_dir, "vea_offload", os.path.basename(model_dir)))
print(json.dumps(out))
"""


def test_offloaded_model_reports_only_its_resident_bytes(tiny_model_dirs, tmp_path):
    model_dir = tiny_model_dirs["qwen2_5_vl"]
    total = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(comfyui_dir()), str(REPO), str(model_dir), str(tmp_path), str(total // 2)],
        capture_output=True,
        text=True,
        cwd=str(comfyui_dir()),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    placed = out["device_map"]
    assert "disk" in placed.values() and "cpu" in placed.values()
    # the manager sees exactly the parts placed on the load device, and their bytes
    assert out["holder_parts"] == sorted(name for name, where in placed.items() if where == "cpu")
    assert out["meta_in_holder"] == 0
    assert out["size"] == out["cpu_bytes"] < out["total_bytes"]
    assert out["loaded"] == out["size"] and out["unloaded"] == 0
    # a load -> unload -> load round trip changes nothing
    assert out["answer_1"] == out["answer_2"] == out["answer_whole"]
    assert out["offload_folder"]
