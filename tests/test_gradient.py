"""Gradient x input: equal to central finite differences in float64; all of it on the one token that can
change the answer in a constructed model; every family; every flag restored; weights made in inference mode."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from tests.helpers import ALL_FAMILIES
from tests.planting import planted
from vea_engine.decoder import decoder_attention_modules, text_decoder, text_decoder_layers
from vea_engine.gradient import GRADIENT_SIGNS, check_sign, gradient_x_input, signed_scores
from vea_engine.inputs import encode_batch
from vea_engine.loading import load_vlm

pytestmark = pytest.mark.usefixtures("one_thread")

QUESTION = "What is written on the red sign?"


def _load(tiny_model_dirs, family, dtype=torch.float64, attn="sdpa"):
    """A private copy of a tiny model (tests may change its weights), in ``dtype``."""
    vlm = load_vlm(tiny_model_dirs[family], dtype="float32", attn_implementation=attn)
    vlm.model.to(dtype)
    return vlm


@contextmanager
def _float64_norms(vlm):
    """transformers' RMS norms compute in float32 whatever the model's dtype; in the scope, the text decoder's
    norms are recomputed in the input's dtype (float64), so finite differences are not float32 noise."""
    norms = [m for m in text_decoder(vlm.model).modules() if type(m).__name__.endswith("RMSNorm")]
    assert norms, "no RMS norm found in the text decoder"

    def exact(module, args, output):
        x = args[0]
        return module.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon))

    handles = [norm.register_forward_hook(exact) for norm in norms]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _log_prob(vlm, inputs, target, delta=None):
    """``log p(target)`` at the last position, with ``delta [B, N, D]`` added to the text decoder's input embeddings."""

    def add(module, args, kwargs):
        return args, {**kwargs, "inputs_embeds": kwargs["inputs_embeds"] + delta}

    handle = text_decoder(vlm.model).register_forward_pre_hook(add, with_kwargs=True) if delta is not None else None
    try:
        with torch.no_grad():
            logits = vlm.model(**inputs, use_cache=False, logits_to_keep=1).logits[:, -1]
    finally:
        if handle is not None:
            handle.remove()
    return torch.log_softmax(logits.double(), -1)[0, target].item()


def _embeddings(vlm, inputs):
    seen = {}

    def keep(module, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"].detach().clone()

    handle = text_decoder(vlm.model).register_forward_pre_hook(keep, with_kwargs=True)
    try:
        _log_prob(vlm, inputs, 0)
    finally:
        handle.remove()
    return seen["embeds"]  # [1, N, D]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_equals_central_finite_differences_in_float64(family, tiny_model_dirs, scene_image):
    vlm = _load(tiny_model_dirs, family)
    with _float64_norms(vlm):
        result = gradient_x_input(vlm, [scene_image], QUESTION)
        raw, target = result.gradients.raw[0], int(result.gradients.target_ids[0])
        assert raw.dtype == torch.float64
        inputs = encode_batch(vlm, [scene_image], QUESTION)
        positions = inputs.positions[0]
        embeds = _embeddings(vlm, inputs.inputs)  # [1, N, D]
        eps = 1e-4
        fd = torch.empty(len(positions), dtype=torch.float64)
        for i, p in enumerate(positions.tolist()):  # d/de log p(E + e * E_i) at 0, E_i = token i's own embedding
            delta = torch.zeros_like(embeds)
            delta[0, p] = eps * embeds[0, p]
            up, down = _log_prob(vlm, inputs.inputs, target, delta), _log_prob(vlm, inputs.inputs, target, -delta)
            fd[i] = (up - down) / (2 * eps)
        assert fd.abs().max() > 1e-6, "the finite differences must be non-trivial"
        torch.testing.assert_close(raw, fd, rtol=1e-3, atol=1e-3 * fd.abs().max().item())
        # checkpointing changes the memory, not the value
        plain = gradient_x_input(vlm, [scene_image], QUESTION, checkpoint=False).gradients.raw[0]
        torch.testing.assert_close(plain, raw, rtol=1e-9, atol=1e-12)
        assert result.gradients.log_probs[0].item() == pytest.approx(_log_prob(vlm, inputs.inputs, target), abs=1e-9)
    # the map keeps the positive part by default
    assert torch.equal(result.attention.scores[0], raw.clamp_min(0).float())


@pytest.mark.parametrize("token", [5, 20])
def test_only_the_token_that_reaches_the_answer_scores(token, tiny_model_dirs, scene_image):
    """Attention outputs are zeroed in every layer but one, where the last query attends to one image token
    (planted): only that token's embedding reaches the answer, so it takes all of the score."""
    vlm = _load(tiny_model_dirs, "llava")
    keep = 2
    with torch.no_grad():
        for index, attn in decoder_attention_modules(vlm.model).items():
            if index != keep:
                attn.o_proj.weight.zero_()
    position = int(encode_batch(vlm, [scene_image], QUESTION).positions[0][token])
    with planted(vlm, [keep], [position]):
        raw = gradient_x_input(vlm, [scene_image], QUESTION).gradients.raw[0]
    others = torch.cat([raw[:token], raw[token + 1 :]])
    assert raw[token].abs() > 1e-6
    assert others.abs().max() <= 1e-12 * raw[token].abs()
    # without the planted attention other tokens reach the answer too
    spread = gradient_x_input(vlm, [scene_image], QUESTION).gradients.raw[0]
    assert torch.cat([spread[:token], spread[token + 1 :]]).abs().max() > 1e-3 * spread.abs().max()


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_runs_and_restores_every_flag(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    requires = [p.requires_grad for p in vlm.model.parameters()]
    layers = text_decoder_layers(vlm.model)
    kernel = vlm.model.config.get_text_config()._attn_implementation
    pair = vlm.layer_kinds.attention[1:3]  # (1, 2) on a plain decoder, softmax layers of a hybrid one
    result = gradient_x_input(vlm, [scene_image], QUESTION, layers=pair)
    scores, raw = result.attention.scores, result.gradients.raw
    n = result.attention.geometry.n_tokens
    assert scores.shape == raw.shape == (1, n) and scores.dtype == torch.float32
    assert torch.isfinite(raw).all() and raw.abs().max() > 0 and (scores >= 0).all()
    assert result.attention.layers == pair and result.attention.canvas.shape[1:3] == result.attention.geometry.canvas_hw
    with torch.no_grad():
        batch = encode_batch(vlm, [scene_image], QUESTION)
        greedy = vlm.model(**batch.inputs, use_cache=False, logits_to_keep=1).logits[0, -1].argmax()
    assert int(result.gradients.target_ids[0]) == int(greedy)
    # the layers' training flag (checkpointing) changes nothing else: equal to a pass without checkpointing
    plain = gradient_x_input(vlm, [scene_image], QUESTION, layers=pair, checkpoint=False).gradients.raw
    torch.testing.assert_close(raw, plain, rtol=1e-4, atol=1e-6 * raw.abs().max().item())
    assert [p.requires_grad for p in vlm.model.parameters()] == requires
    assert all(not layer.training and not layer.gradient_checkpointing for layer in layers)
    assert vlm.model.config.get_text_config()._attn_implementation == kernel


def test_eager_model_runs_on_sdpa_and_is_restored(vlm_of, scene_image):
    eager, sdpa = vlm_of("qwen2_5_vl", "eager"), vlm_of("qwen2_5_vl")
    used = []
    handle = decoder_attention_modules(eager.model)[0].register_forward_pre_hook(
        lambda module, *_: used.append(module.config._attn_implementation)
    )
    try:
        got = gradient_x_input(eager, [scene_image], QUESTION).gradients.raw
    finally:
        handle.remove()
    # on SDPA, and run twice: the forward pass and the checkpoint's recomputation in the backward pass
    assert used == ["sdpa", "sdpa"] and eager.model.config.get_text_config()._attn_implementation == "eager"
    torch.testing.assert_close(got, gradient_x_input(sdpa, [scene_image], QUESTION).gradients.raw, rtol=1e-4, atol=1e-6)


def test_weights_made_in_inference_mode(tiny_model_dirs, scene_image):
    """ComfyUI runs nodes under torch.inference_mode, so weights it moves (to a device or dtype) become inference
    tensors: the gradient still works, equal to a normal model's, and those weights are back in place afterwards."""
    vlm = load_vlm(tiny_model_dirs["llava"], dtype="float32", attn_implementation="sdpa")
    with torch.inference_mode():
        vlm.model.to(torch.float64)  # a move inside inference mode, as ComfyUI's model management does
        before = [id(p) for p in vlm.model.parameters()]
        assert all(p.is_inference() for p in vlm.model.parameters())
        got = gradient_x_input(vlm, [scene_image], QUESTION, target_ids=3).gradients
    expected = gradient_x_input(_load(tiny_model_dirs, "llava"), [scene_image], QUESTION, target_ids=3).gradients
    torch.testing.assert_close(got.raw, expected.raw, rtol=1e-9, atol=1e-12)
    assert int(got.target_ids[0]) == 3
    assert [id(p) for p in vlm.model.parameters()] == before
    assert all(p.is_inference() for p in vlm.model.parameters())


def test_sign_rules_and_bad_arguments(vlm_of, scene_image):
    raw = torch.tensor([[-2.0, 0.5, 0.0, 3.0]])
    assert torch.equal(signed_scores(raw, "positive"), torch.tensor([[0.0, 0.5, 0.0, 3.0]]))
    assert torch.equal(signed_scores(raw, "absolute"), torch.tensor([[2.0, 0.5, 0.0, 3.0]]))
    assert GRADIENT_SIGNS[0] == "positive"
    with pytest.raises(ValueError, match=r"sign must be one of \('positive', 'absolute'\), got 'raw'"):
        check_sign("raw")
    vlm = vlm_of("llava")
    with pytest.raises(ValueError, match=r"target_ids \[-1\] must be one token id or one per image"):
        gradient_x_input(vlm, [scene_image], QUESTION, target_ids=-1)
