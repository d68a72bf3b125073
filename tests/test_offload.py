"""Big models on small devices: a model spread over CPU and disk by a memory budget (accelerate).

The budget is a fraction of the tiny checkpoint's bytes, so some decoder layers live on
disk (weights on the meta device between calls, read from the safetensors file as the
forward pass reaches them). Oracle: the same checkpoint loaded whole, on eager attention
with ``output_attentions``. Captured rows, early-exit scores and greedy answers must not
change with offloading. Quantisation (bitsandbytes) needs a CUDA GPU; here only its
error is checked.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.helpers import cli, vea_run_args
from vea_engine.attribution import extract_attention
from vea_engine.capture import capture_attention_rows
from vea_engine.inputs import encode_batch
from vea_engine.loading import (
    QUANTIZATIONS,
    describe_placement,
    load_vlm,
    module_device,
    parse_max_memory,
    parse_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")

GiB, MiB = 2**30, 2**20
OFFLOAD_FAMILIES = ("qwen2_5_vl", "llava", "gemma3")
QUESTION = "What is written on the red sign?"


# ----------------------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cuda:0=8GiB,cpu=32GiB", {0: 8 * GiB, "cpu": 32 * GiB}),
        ("cuda=7.5GB disk=1TB", {0: 7_500_000_000, "disk": 10**12}),
        (" 1=512MiB ,cpu=1000 ", {1: 512 * MiB, "cpu": 1000}),
        (" CPU = 4GiB ", {"cpu": 4 * GiB}),  # case and spaces around '=' and before the unit are read
        ("CUDA:0 = 8 GiB  Cpu=2 gib", {0: 8 * GiB, "cpu": 2 * GiB}),
        ({"cpu": 1000, "cuda:1": "0.5GiB"}, {"cpu": 1000, 1: GiB // 2}),
        ({torch.device("cpu"): "2KiB"}, {"cpu": 2048}),
        ("", None),
        (None, None),
    ],
)
def test_parse_max_memory(spec, expected):
    assert parse_max_memory(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cuda:0", "is not 'device=size'"),
        ("gpu=8GiB", "unknown device 'gpu'"),
        ("cpu=8XB", "is not a memory size"),
        ("cpu=0", "out of range"),
        ("cpu=2048TiB", "out of range"),
        ("cuda=1GiB,cuda:0=2GiB", "named twice"),
        ("disk=100GiB", "not only the disk"),
        (",".join(f"{i}=1GiB" for i in range(17)), "at most 16"),
        ("cpu=" + "9" * 2000, "too long"),
        (["cpu=1GiB"], "must be a string or a mapping"),
    ],
)
def test_parse_max_memory_refuses(spec, message):
    with pytest.raises(ValueError, match="max_memory") as error:
        parse_max_memory(spec)
    assert message in str(error.value)


def test_parse_size_units():
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size("10 MB") == 10**7
    assert parse_size(".5KiB") == 512
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError, match="not a memory size"):
        parse_size(True)


def test_describe_placement_counts_layers():
    placement = {
        "model.visual": "cuda:0",
        "model.language_model.layers.0": "cuda:0",
        "model.language_model.layers.1": "cpu",
        "model.language_model.layers.2": "disk",
        "lm_head": "disk",
    }
    assert describe_placement(placement) == (
        "cuda:0: 1 decoder layers + 1 other parts; cpu: 1 decoder layers; disk: 1 decoder layers + 1 other parts"
    )


# ----------------------------------------------------------------------------- errors before loading


def test_quantization_without_bitsandbytes_or_gpu_says_how_to_install(tiny_model_dirs):
    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("bitsandbytes and a CUDA GPU are both present: quantisation would load")
    for quantization in QUANTIZATIONS[1:]:
        with pytest.raises(ValueError, match="pip install bitsandbytes") as error:
            load_vlm(tiny_model_dirs["qwen2_5_vl"], quantization=quantization)
        message = str(error.value)
        assert message.startswith(f"quantization={quantization!r} needs ") and len(message) <= 300, message
        assert "choose 'none'" in message
        if not torch.cuda.is_available():
            assert "a CUDA GPU (torch sees none)" in message
    with pytest.raises(ValueError, match="quantization must be one of"):
        load_vlm(tiny_model_dirs["qwen2_5_vl"], quantization="3bit")


@pytest.mark.skipif(torch.cuda.is_available(), reason="names a GPU this machine has")
def test_budget_for_a_missing_gpu_is_refused(tiny_model_dirs):
    with pytest.raises(ValueError, match="max_memory names cuda:0, but torch sees 0 CUDA GPU"):
        load_vlm(tiny_model_dirs["qwen2_5_vl"], max_memory="cuda:0=8GiB,cpu=1GiB")


def test_device_outside_the_budget_is_refused(tiny_model_dirs):
    with pytest.raises(ValueError, match="device 'cuda:3' is not in max_memory"):
        load_vlm(tiny_model_dirs["qwen2_5_vl"], device="cuda:3", max_memory="cpu=1GiB")


def test_unwritable_offload_folder_is_named(tiny_model_dirs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        ValueError, match=r"offload_folder: cannot create .*a-file/weights \(Not a directory\); give a writable"
    ):
        load_vlm(tiny_model_dirs["qwen2_5_vl"], max_memory="cpu=1GiB", offload_folder=blocker / "weights")


# ----------------------------------------------------------------------------- offloaded model == whole model


def _budget(eager) -> int:
    """A CPU budget that holds the vision tower and the first layers but not the rest (in bytes)."""
    return int(0.6 * sum(p.numel() * p.element_size() for p in eager.model.parameters()))


def _disk_layers(vlm) -> list[str]:
    return [name for name, where in vlm.device_map.items() if where == "disk" and ".layers." in name]


def _disk_weights_resident(vlm) -> list[str]:
    """Names of disk-placed parameters that are not back on the meta device (weights left behind)."""
    modules = dict(vlm.model.named_modules())
    return [
        f"{name}.{param}"
        for name, where in vlm.device_map.items()
        if where == "disk"
        for param, tensor in modules[name].named_parameters()
        if tensor.device.type != "meta"
    ]


@pytest.fixture(scope="module")
def offloaded(tiny_model_dirs, vlm_of, tmp_path_factory):
    """``family -> (offloaded sdpa VLM, offloaded eager VLM)``, loaded once per family."""
    cache = {}

    def get(family):
        if family not in cache:
            budget = {"cpu": _budget(vlm_of(family, "eager"))}
            folder = tmp_path_factory.mktemp(f"offload-{family}")
            cache[family] = tuple(
                load_vlm(
                    tiny_model_dirs[family],
                    dtype="float32",
                    device="cpu",
                    attn_implementation=attn,
                    max_memory=budget,
                    offload_folder=folder,
                )
                for attn in ("sdpa", "eager")
            )
        return cache[family]

    return get


@pytest.mark.parametrize("family", OFFLOAD_FAMILIES)
def test_offloaded_capture_equals_eager(family, offloaded, vlm_of, scene_image):
    eager = vlm_of(family, "eager")
    for vlm in offloaded(family):
        disk = _disk_layers(vlm)
        assert disk and len(disk) < vlm.num_layers, vlm.device_map  # some layers on disk, some in memory
        layer = dict(vlm.model.named_modules())[disk[0]]
        assert {p.device.type for p in layer.parameters()} == {"meta"}  # really offloaded between calls
        assert vlm.device == torch.device("cpu") and module_device(layer) == torch.device("cpu")
        inputs = encode_batch(eager, [scene_image], QUESTION).inputs
        with torch.inference_mode():
            out = eager.model(**inputs, use_cache=False, output_attentions=True)
            expected = torch.stack([a.float().mean(1)[:, -1] for a in out.attentions])  # [L, B, K]
            with capture_attention_rows(vlm.model, tuple(range(vlm.num_layers))) as recorder:
                logits = vlm.model(**encode_batch(vlm, [scene_image], QUESTION).inputs, use_cache=False).logits
        got = recorder.stacked()[:, :, -1]  # [L, B, K]
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-6
        if vlm.model.config.text_config._attn_implementation == "eager":  # the same computation, layer by layer
            assert torch.equal(got, expected) and torch.equal(logits, out.logits)
        else:
            torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=1e-4)
        assert not _disk_weights_resident(vlm)


@pytest.mark.parametrize("family", OFFLOAD_FAMILIES)
def test_offloaded_early_exit_and_answers_match(family, offloaded, vlm_of, scene_image):
    from vea_engine.answering import answer

    whole = vlm_of(family, "eager")
    vlm = offloaded(family)[1]
    deepest = int(_disk_layers(vlm)[0].rsplit(".", 1)[1])  # the forward stops inside a disk layer
    layers = [max(0, deepest - 1), deepest]
    expected = extract_attention(whole, [scene_image], QUESTION, layers)
    got = extract_attention(vlm, [scene_image], QUESTION, layers)  # early exit (the default)
    assert (got.scores - expected.scores).abs().max().item() <= 1e-6
    # the stopped forward leaves no disk weights in memory, and the next full forward is unchanged
    assert not _disk_weights_resident(vlm)
    assert answer(vlm, [scene_image], QUESTION, max_new_tokens=6) == answer(
        whole, [scene_image], QUESTION, max_new_tokens=6
    )
    assert not _disk_weights_resident(vlm)


@pytest.mark.parametrize("family", OFFLOAD_FAMILIES)
def test_offloaded_compare_decodes_both_answers_as_the_whole_model_does(family, offloaded, vlm_of, scene_image):
    """Base (from the attribution pass) and VEA answers decoded as one batch through accelerate's hooks."""
    from vea_engine.pipeline import run_vea

    whole, vlm = vlm_of(family, "eager"), offloaded(family)[1]
    got = run_vea(vlm, [scene_image], QUESTION, (0, 1), max_new_tokens=6, methods=("base", "vea"))
    expected = run_vea(whole, [scene_image], QUESTION, (0, 1), max_new_tokens=6, methods=("base", "vea"))
    assert got.answers == expected.answers
    assert torch.equal(got.highlighted, expected.highlighted)
    assert not _disk_weights_resident(vlm)


def test_cli_run_with_a_memory_budget(tiny_model_dirs, vlm_of, tmp_path, capsys, scene_image):
    import json

    image = tmp_path / "scene.png"
    scene_image.save(image)
    budget = f"cpu={_budget(vlm_of('qwen2_5_vl', 'eager'))}"
    args = vea_run_args(tiny_model_dirs["qwen2_5_vl"], image, tmp_path / "whole")
    code, whole = cli(capsys, *args, "--device", "cpu", "--dtype", "float32")
    assert code == 0, whole
    offload_args = vea_run_args(tiny_model_dirs["qwen2_5_vl"], image, tmp_path / "offload")
    code, spread = cli(
        capsys, *offload_args, "--device", "cpu", "--dtype", "float32", "--max-memory", budget, "--offload-folder",
        tmp_path / "offload-weights",
    )  # fmt: skip
    assert code == 0, spread
    whole, spread = json.loads(whole), json.loads(spread)
    assert (spread["base"], spread["vea"]) == (whole["base"], whole["vea"])
    assert (tmp_path / "offload-weights").is_dir()


def test_cli_refuses_quantization_without_bitsandbytes(tiny_model_dirs, tmp_path, capsys, caplog, scene_image):
    if importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available():
        pytest.skip("bitsandbytes and a CUDA GPU are both present")
    image = tmp_path / "scene.png"
    scene_image.save(image)
    code, _ = cli(capsys, *vea_run_args(tiny_model_dirs["qwen2_5_vl"], image, tmp_path), "--quantization", "4bit")
    assert code == 2
    assert "pip install bitsandbytes" in caplog.text
