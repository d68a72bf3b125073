"""Plant attention on chosen key positions of a real model, independent of the capture code.

Forward hooks *pin* the keys of the chosen positions, and the query of the query
position, to ``strength`` along one head dimension (every other component zero), in
the selected decoder layers of every family. That dimension (:func:`quiet_dim`) pairs with
the lowest RoPE frequency, or is not rotated at all where RoPE rotates only part of each
head, so rotation leaves ``q . k`` = ``strength^2`` (times the scale) for every
chosen key alike, far above any other key: the planted keys share the attention row
evenly and everything else gets ~0. The hooks sit on ``k_proj`` / ``q_proj``, or on
``k_norm`` / ``q_norm`` (``k_layernorm`` / ``q_layernorm``) where the model normalises queries
and keys per head (Gemma 3, Qwen3, LFM2): the pin must survive that norm. A layer that reuses an
earlier layer's keys (Gemma 4's KV sharing) is planted in the keys of that earlier layer.

``key_positions`` is a fixed list, or a callable ``input_ids [B, N] -> positions``
evaluated once per forward pass of the whole model (so code that runs several
forward passes, e.g. profiling over many samples, can be planted per sample).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from vea_engine.decoder import decoder_attention_modules, key_source_layers

STRENGTH = 40.0

KeyPositions = Sequence[int] | Callable[[torch.Tensor], Sequence[int]]


def _pin(out: torch.Tensor, positions: list[int], n: int, dim: int, head_dim: int, strength: float) -> torch.Tensor:
    """``out`` with the vectors of sequence ``positions`` set to ``strength * e_dim`` in every head.

    ``out`` is a projection ``[B, N, heads * head_dim]`` or a per-head norm's output,
    ``[B, N, heads, head_dim]`` or ``[B, heads, N, head_dim]``; ``n`` is the sequence length N.
    """
    out = out.clone()
    if out.ndim == 3:
        heads = out.view(*out.shape[:2], -1, head_dim)  # [B, N, heads, head_dim], a view of ``out``
        token_dim = 1
    else:
        heads = out
        token_dim = 1 if out.shape[1] == n else 2
    assert heads.shape[token_dim] == n, f"cannot find the sequence axis (N = {n}) of {tuple(out.shape)}"
    index = [slice(None)] * 4
    index[token_dim] = positions
    pinned = torch.zeros_like(heads[tuple(index)])  # [.., P, .., head_dim]
    pinned[..., dim] = strength
    heads[tuple(index)] = pinned
    return out


def quiet_dim(attn) -> int:
    """The head dimension a plant pins: one that RoPE leaves (almost) unrotated.

    Where RoPE rotates only the first part of each head (``partial_rotary_factor`` < 1,
    GLM-V), the last dimension is not rotated at all; otherwise ``head_dim / 2 - 1``, which
    pairs with ``head_dim - 1`` at the lowest rotary frequency.
    """
    config = getattr(attn, "config", None)
    rope = getattr(config, "rope_parameters", None) or {}
    factor = rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None)) or 1.0
    return attn.head_dim - 1 if factor < 1 else attn.head_dim // 2 - 1


@contextmanager
def planted(
    vlm, layers: Sequence[int], key_positions: KeyPositions, query_position: int = -1, strength: float = STRENGTH
):
    """Within the scope, layers ``layers`` of ``vlm`` attend from ``query_position`` to ``key_positions``.

    Args:
        vlm: a loaded VLM (``vlm.model`` is the transformers model).
        layers: 0-based decoder layers to plant.
        key_positions: absolute sequence positions (into ``input_ids``), or a callable
            ``input_ids -> positions`` called at the start of every model forward.
        query_position: the query row that attends (``-1`` = last prompt token).
        strength: the pinned component of q and k.
    """
    modules = decoder_attention_modules(vlm.model)
    sources = key_source_layers(vlm.model)
    current: dict[str, list[int]] = {"keys": [] if callable(key_positions) else [int(p) for p in key_positions]}
    seq_len: dict[int, int] = {}  # id(attention module) -> N of its current call
    handles = []
    if callable(key_positions):

        def set_keys(module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if input_ids is not None and input_ids.shape[1] > 1:  # prefill (not a decoding step)
                current["keys"] = [int(p) for p in key_positions(input_ids)]

        handles.append(vlm.model.register_forward_pre_hook(set_keys, with_kwargs=True))

    def record_len(module, args, kwargs):
        seq_len[id(module)] = (args[0] if args else kwargs["hidden_states"]).shape[1]  # [B, N, D]

    for layer in layers:
        attn = modules[layer]
        keys = modules[sources[layer]]  # the attention module whose keys this layer attends with
        head_dim = attn.head_dim
        dim = quiet_dim(attn)
        q_site = next((getattr(attn, n) for n in ("q_norm", "q_layernorm") if hasattr(attn, n)), attn.q_proj)
        k_site = next((getattr(keys, n) for n in ("k_norm", "k_layernorm") if hasattr(keys, n)), keys.k_proj)

        def pin_k(module, args, output, keys=keys, dim=dim, head_dim=head_dim):
            n = seq_len[id(keys)]
            if n == 1:  # a decoding step: the planted keys are already in the cache
                return output
            return _pin(output, current["keys"], n, dim, head_dim, strength)

        def pin_q(module, args, output, attn=attn, dim=dim, head_dim=head_dim):
            return _pin(output, [query_position], seq_len[id(attn)], dim, head_dim, strength)

        handles += [
            attn.register_forward_pre_hook(record_len, with_kwargs=True),
            keys.register_forward_pre_hook(record_len, with_kwargs=True),
            k_site.register_forward_hook(pin_k),
            q_site.register_forward_hook(pin_q),
        ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
