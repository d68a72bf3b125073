"""Gradient x input attribution over the image tokens.

For the first answer token ``t`` (the greedy token of the attribution prompt's
next-token distribution, or a given token id), the score of image token ``i`` is

    s_i = sum_d  d log p(t | E) / d E[i, d]  *  E[i, d]            # E: [N, D] merged input embeddings

where ``E`` are the input embeddings of the language model after the image
features were merged in (what the text decoder receives as ``inputs_embeds``).
``s_i`` is the first-order change of ``log p(t)`` when token ``i``'s embedding is
scaled from 0 to itself: positive where the token supports the answer, negative
where it argues against it.

**Sign.** The raw signed sums are kept (:attr:`GradientAttribution.raw`). The map
uses :data:`GRADIENT_SIGNS`: ``positive`` (the default) keeps ``max(s_i, 0)``, the
evidence *for* the answer, like attention (non-negative, and the paper's denoise
rule assumes non-negative scores); ``absolute`` keeps ``|s_i|``, every token that
matters either way.

**Memory** is bounded by the forward pass's, not the graph's:

* the vision tower and the merge run with no parameter requiring a gradient, so
  autograd records nothing there; the merged embeddings are detached into a leaf
  that requires grad (a scoped forward pre-hook on the text decoder), so the graph
  starts at the image-token embeddings;
* the decoder layers run under gradient checkpointing (transformers' own
  per-layer mechanism, enabled on the layer objects only for the call, with
  non-reentrant ``torch.utils.checkpoint``): each layer keeps its input, and its
  activations are recomputed during the backward pass;
* attention runs on SDPA (a model loaded on eager is switched for the call), except
  where the decoder soft-caps attention logits (Gemma 2 / PaliGemma 2), which only
  eager computes;
* only the last position's logits are computed (``logits_to_keep=1``) and
  :func:`torch.autograd.grad` returns the leaf's gradient without storing it in
  any ``.grad``.

Every flag changed (parameters' ``requires_grad``, the layers' checkpointing
attributes and ``training`` flag, the attention kernel) is restored in ``finally``.
The layers' submodules stay in eval mode (no dropout). Weights created under
``torch.inference_mode`` (ComfyUI loads and runs nodes in it) cannot take part in
autograd; for the call they are replaced by zero-copy ordinary aliases of the same
storage, and restored afterwards.

Qwen3-VL also adds "deepstack" visual features to the hidden states of its first
decoder layers at the image positions; those are treated as constants: the
gradient is taken with respect to the merged input embeddings only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import compat
from .attribution import AttentionMap, batch_map
from .config import MASK_DTYPE
from .decoder import decoder_attention_modules, text_decoder, text_decoder_layers
from .inputs import Progress, encode_batch, layer_progress
from .layers import LayerSelection, for_model
from .loading import VLM

#: How signed gradient x input sums become the map's scores: ``positive`` (evidence for the answer,
#: the default) or ``absolute`` (tokens that matter either way).
GRADIENT_SIGNS = ("positive", "absolute")

_MISSING = object()


@dataclass(frozen=True)
class TokenGradients:
    """Gradient x input of each sequence's image tokens.

    Attributes:
        raw: ``[B, n]`` signed sums over the hidden dimension (float32, or float64 for a float64 model).
        target_ids: ``[B]`` the token whose log-probability was differentiated.
        log_probs: ``[B]`` that log-probability.
    """

    raw: torch.Tensor
    target_ids: torch.Tensor
    log_probs: torch.Tensor


@dataclass(frozen=True)
class GradientAttribution:
    """Gradient x input of a batch of images: the signed sums and the map made from them.

    Attributes:
        gradients: the raw signed sums, target tokens and their log-probabilities.
        attention: the :class:`~vea_engine.attribution.AttentionMap` whose scores are the
            sums with the chosen sign rule applied (float32, >= 0).
        sign: the rule used (one of :data:`GRADIENT_SIGNS`).
    """

    gradients: TokenGradients
    attention: AttentionMap
    sign: str


def check_sign(sign: str, who: str = "gradient_x_input") -> str:
    """``sign`` if it is one of :data:`GRADIENT_SIGNS`, else a ValueError saying what to pass."""
    if sign not in GRADIENT_SIGNS:
        raise ValueError(
            f"{who}: sign must be one of {GRADIENT_SIGNS}, got {sign!r}; 'positive' keeps the evidence for the "
            "answer, 'absolute' every token that changes it."
        )
    return sign


def signed_scores(raw: torch.Tensor, sign: str = GRADIENT_SIGNS[0]) -> torch.Tensor:
    """Signed sums ``[B, n]`` -> non-negative float32 scores by the rule ``sign`` (:data:`GRADIENT_SIGNS`)."""
    check_sign(sign)
    values = raw.clamp_min(0) if sign == "positive" else raw.abs()
    return values.to(MASK_DTYPE)


def _alias(tensor: torch.Tensor) -> torch.Tensor:
    """An ordinary (non-inference) tensor sharing ``tensor``'s storage: no copy."""
    out = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return out.set_(tensor.untyped_storage(), tensor.storage_offset(), tensor.size(), tensor.stride())


@contextmanager
def _ordinary_weights(model: nn.Module) -> Iterator[None]:
    """Within the scope, parameters and buffers made under inference mode are zero-copy ordinary aliases."""
    swapped: list[tuple[dict, str, Any]] = []
    try:
        for module in model.modules():
            for store in (module._parameters, module._buffers):
                for name, value in store.items():
                    if value is not None and value.is_inference():
                        swapped.append((store, name, value))
                        alias = _alias(value)
                        store[name] = nn.Parameter(alias, requires_grad=False) if store is module._parameters else alias
        yield
    finally:
        for store, name, value in reversed(swapped):
            store[name] = value


@contextmanager
def gradient_scope(model: nn.Module, checkpoint: bool = True) -> Iterator[None]:
    """Scoped settings of a bounded-memory backward pass through the text decoder (see module docstring).

    Args:
        model: a transformers VLM.
        checkpoint: checkpoint every decoder layer (recompute activations in the backward pass).
    """
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    layers = text_decoder_layers(model)
    names = ("gradient_checkpointing", "_gradient_checkpointing_func")
    saved_layers = [({n: layer.__dict__.get(n, _MISSING) for n in names}, layer.training) for layer in layers]
    modules = decoder_attention_modules(model)
    configs = {id(m.config): m.config for m in modules.values()}
    text_config = getattr(text_decoder(model), "config", None)
    if text_config is not None:
        configs[id(text_config)] = text_config
    saved_kernels = {key: compat.raw_attn_implementation(cfg) for key, cfg in configs.items()}
    try:
        for p in params:
            p.requires_grad_(False)
        softcapped = any(getattr(cfg, "attn_logit_softcapping", None) for cfg in configs.values())
        if not softcapped:
            for cfg in configs.values():
                if compat.get_attn_implementation(cfg) == "eager":
                    compat.set_attn_implementation(cfg, "sdpa")
        if checkpoint:
            run = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
            for layer in layers:
                layer.gradient_checkpointing = True
                layer._gradient_checkpointing_func = run
                layer.training = True  # the layer object only: its attention and MLP stay in eval mode
        yield
    finally:
        for p, flag in zip(params, requires, strict=True):
            p.requires_grad_(flag)
        for layer, (attrs, training) in zip(layers, saved_layers, strict=True):
            layer.training = training
            for name, value in attrs.items():
                if value is _MISSING:
                    layer.__dict__.pop(name, None)
                else:
                    setattr(layer, name, value)
        for key, cfg in configs.items():
            compat.set_attn_implementation(cfg, saved_kernels[key])


@contextmanager
def _embedding_leaf(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Replace the text decoder's ``inputs_embeds`` by a detached leaf that requires grad; yields ``{"embeds": leaf}``."""
    holder: dict[str, torch.Tensor] = {}

    def make_leaf(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            raise RuntimeError(
                f"gradient_x_input: {type(module).__name__} was not given inputs_embeds; this model's text decoder "
                "is called in a way gradient x input does not support."
            )
        leaf = embeds.detach().requires_grad_(True)  # [B, N, D]
        holder["embeds"] = leaf
        return args, {**kwargs, "inputs_embeds": leaf}

    handle = text_decoder(model).register_forward_pre_hook(make_leaf, with_kwargs=True)
    try:
        yield holder
    finally:
        handle.remove()


def _ordinary_inputs(inputs: Any) -> dict[str, Any]:
    """Processor outputs with every tensor an ordinary tensor (those made under inference mode are cloned)."""
    return {k: (v.clone() if isinstance(v, torch.Tensor) and v.is_inference() else v) for k, v in dict(inputs).items()}


def input_gradients(
    model: nn.Module,
    inputs: Any,
    positions: Sequence[torch.Tensor],
    target_ids: torch.Tensor | Sequence[int] | int | None = None,
    checkpoint: bool = True,
    progress: Progress | None = None,
) -> TokenGradients:
    """Gradient x input of the image tokens for the next token's log-probability (one forward + backward).

    Args:
        model: a transformers VLM.
        inputs: processor outputs of the batch (on the model's device).
        positions: each sequence's image-token positions in ``input_ids`` (``[n]`` each, the same ``n``).
        target_ids: the token to explain, one id or one per sequence; None: each sequence's
            greedy next token (argmax of its last position's logits).
        checkpoint: gradient checkpointing of the decoder layers.
        progress: called per decoder layer of the forward pass.

    Returns:
        :class:`TokenGradients` (``raw [B, n]``).
    """
    with torch.inference_mode(False):
        inputs = _ordinary_inputs(inputs)
        batch = int(inputs["input_ids"].shape[0])
        with (
            _ordinary_weights(model),
            gradient_scope(model, checkpoint),
            _embedding_leaf(model) as holder,
            layer_progress(model, progress),
            torch.enable_grad(),
        ):
            logits = model(**inputs, use_cache=False, logits_to_keep=1).logits[:, -1]  # [B, V]
            dtype = torch.promote_types(logits.dtype, torch.float32)
            log_probs = torch.log_softmax(logits.to(dtype), dim=-1)  # [B, V]
            if target_ids is None:
                targets = log_probs.detach().argmax(dim=-1)  # [B] greedy
            else:
                targets = torch.as_tensor(target_ids, device=logits.device, dtype=torch.long).reshape(-1)
                if targets.numel() == 1:
                    targets = targets.expand(batch)
                if targets.numel() != batch or not ((targets >= 0) & (targets < logits.shape[-1])).all():
                    raise ValueError(
                        f"gradient_x_input: target_ids {targets.tolist()} must be one token id or one per image "
                        f"({batch}), each in 0..{logits.shape[-1] - 1}."
                    )
            chosen = log_probs.gather(1, targets[:, None])[:, 0]  # [B]
            embeds = holder["embeds"]  # [B, N, D] leaf
            (grad,) = torch.autograd.grad(chosen.sum(), embeds)  # [B, N, D]; sequences are independent
        per_token = (grad.to(dtype) * embeds.detach().to(dtype)).sum(dim=-1)  # [B, N]
        raw = torch.stack([per_token[b, pos.to(per_token.device)] for b, pos in enumerate(positions)])  # [B, n]
    return TokenGradients(raw.detach().cpu(), targets.detach().cpu(), chosen.detach().cpu())


def gradient_x_input(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: LayerSelection | Sequence[int] | None = None,
    sign: str = GRADIENT_SIGNS[0],
    target_ids: torch.Tensor | Sequence[int] | int | None = None,
    checkpoint: bool = True,
    prompt_style: str = "qa",
    template: str | None = None,
    progress: Progress | None = None,
    rounding: str = "truncate",
) -> GradientAttribution:
    """Gradient x input of each image's tokens for the first answer token of its question.

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1], or a list of same-size images.
        questions: one question, or one per image.
        layers: recorded on the map (and used by sink detection); the gradient itself
            runs through the whole model. None: every layer.
        sign: :data:`GRADIENT_SIGNS` rule of the map's scores.
        target_ids: the token to explain (one id or one per image); None: the greedy first answer token.
        checkpoint: gradient checkpointing of the decoder layers (bounded memory).
        prompt_style, template, rounding: as :func:`~vea_engine.attribution.layer_scores`.
        progress: called per decoder layer of the forward pass.

    Returns:
        :class:`GradientAttribution`; its ``attention`` has ``scores [B, n_tokens]``.
    """
    check_sign(sign)
    selected = for_model(layers if layers is not None else "all", vlm.layer_kinds, vlm.name).layers
    batch = encode_batch(vlm, images, questions, prompt_style, template, rounding)
    gradients = input_gradients(vlm.model, batch.inputs, batch.positions, target_ids, checkpoint, progress)
    attention = batch_map(vlm, signed_scores(gradients.raw, sign), batch, selected)  # scores [B, n_tokens]
    return GradientAttribution(gradients, attention, sign)
