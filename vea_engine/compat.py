"""Every transformers internal the engine relies on, in one place.

Capture switches a decoder's attention kernel inside a scope. transformers has no
public API for "run this config on another registered kernel and switch back", so
three private details are used; each is reached only through this module, and
``tests/test_compat.py`` checks them against the installed transformers:

* ``config._attn_implementation_internal`` -- the field behind the public
  ``config._attn_implementation`` property; writing it switches the kernel
  without re-validating the model (``set_attn_implementation`` would);
* ``AttentionInterface._global_mapping`` / ``ALL_MASK_ATTENTION_FUNCTIONS._global_mapping``
  -- the registries, read to know whether a name is registered and which mask
  function a base kernel uses;
* ``<modeling module>.eager_attention_forward`` -- each model's own eager kernel
  (``"eager"`` is not in the registry).

Decoding several answers as one batch after their own prefills (:mod:`vea_engine.answering`)
uses two more: the layers of a ``DynamicCache`` (``cache.layers[i].keys`` / ``.values``
``[B, KVH, N, D]``, a sliding layer's ``cumulative_length``; a linear-attention layer's
fixed-size ``conv_states`` / ``recurrent_states`` ``{index: [B, ...]}`` -- conv states only on
LFM2's convolution layers -- and its ``cumulative_length_linear``), joined row-wise by
:func:`merge_caches`; and what a model keeps between a prefill and its decoding steps
(:data:`DECODE_STATE`: the M-RoPE offsets of Qwen2/2.5/3-VL), read by :func:`decode_state`
and put back by :func:`set_decode_state`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: The transformers major version these internals were checked against.
TRANSFORMERS_MAJOR = 5


def get_attn_implementation(config: Any) -> str | None:
    """The attention kernel name a config selects (``"sdpa"``, ``"eager"``, ...)."""
    return getattr(config, "_attn_implementation", None)


def set_attn_implementation(config: Any, name: str | None) -> None:
    """Point ``config`` at kernel ``name`` (a registered name), without re-validating the model."""
    config._attn_implementation_internal = name


def raw_attn_implementation(config: Any) -> str | None:
    """What :func:`set_attn_implementation` wrote last (to restore it exactly)."""
    return config._attn_implementation_internal


def attention_function(name: str, module: nn.Module) -> Callable[..., Any]:
    """The attention function ``name`` resolves to for ``module`` (its own eager kernel for ``"eager"``)."""
    if name == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[name]


def mask_kernels() -> dict[str, Callable[..., Any]]:
    """Registered mask functions by kernel name (the kernels capture can wrap)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    return dict(ALL_MASK_ATTENTION_FUNCTIONS._global_mapping)


def is_registered(name: str) -> bool:
    """Whether an attention kernel of that name is registered."""
    from transformers import AttentionInterface

    return name in AttentionInterface._global_mapping


def register_kernel(name: str, function: Callable[..., Any], like: str) -> None:
    """Register ``function`` as attention kernel ``name``, masked as kernel ``like`` is."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, mask_kernels()[like])


#: Attributes of a VLM's inner model that one prefill sets and its decoding steps read:
#: ``rope_deltas`` ``[B, 1]`` (Qwen2/2.5/3-VL), the offset of each sequence's M-RoPE text
#: positions from its cache positions.
DECODE_STATE = ("rope_deltas",)


def _state_owner(model: nn.Module) -> nn.Module:
    return getattr(model, "model", model)


def decode_state(model: nn.Module, rows: int) -> dict[str, torch.Tensor]:
    """What ``model`` keeps for decoding after a prefill of ``rows`` sequences, one row each."""
    owner = _state_owner(model)
    state = {}
    for name in DECODE_STATE:
        value = getattr(owner, name, None)
        if isinstance(value, torch.Tensor):
            state[name] = value.expand(rows, *value.shape[1:]).clone() if value.shape[0] == 1 else value.clone()
    return state


def set_decode_state(model: nn.Module, states: list[dict[str, torch.Tensor]], rows: list[torch.Tensor]) -> None:
    """Put back the decoding state of several prefills, joined row-wise (``rows[i]``: the rows kept of prefill i)."""
    owner = _state_owner(model)
    for name in DECODE_STATE:
        parts = [
            state[name][kept.to(state[name].device)] for state, kept in zip(states, rows, strict=True) if name in state
        ]
        if parts and len(parts) == len(states):
            setattr(owner, name, torch.cat([p.to(parts[0].device) for p in parts]))


def merge_caches(caches: list[Any], rows: list[torch.Tensor]) -> Any | None:
    """One ``DynamicCache`` holding rows ``rows[i]`` of each ``caches[i]``, left-padded with zeros to the longest.

    The caches are of prompts left-padded in their own batches; padding them further on the
    left keeps every sequence right-aligned, as one left-padded batch would hold them (the
    attention mask hides the new columns). A sliding-window layer keeps the longest
    ``cumulative_length``, which right alignment makes the one its mask needs. A
    linear-attention layer holds fixed-size states per sequence -- conv and recurrent states
    (Qwen3.5's Gated DeltaNet), or conv states only (LFM2's short convolutions) -- which are
    joined row-wise as they are, with the longest prompt's length. A layer that holds nothing
    (``DummyLayer``: Gemma 4's KV-shared layers, which reuse an earlier layer's keys) stays as
    it is. The first cache is reused (the caches are consumed). Returns None for any other
    kind of cache, or layers that do not hold the same states.
    """
    from transformers.cache_utils import (
        DummyLayer,
        DynamicCache,
        DynamicLayer,
        DynamicSlidingWindowLayer,
        LinearAttentionLayer,
    )

    kinds = (DynamicLayer, DynamicSlidingWindowLayer, LinearAttentionLayer, DummyLayer)
    if any(type(cache) is not DynamicCache for cache in caches):
        return None
    counts = {len(cache.layers) for cache in caches}
    if len(counts) != 1:
        return None
    for i in range(counts.pop()):
        layers = [cache.layers[i] for cache in caches]
        if len({type(layer) for layer in layers}) != 1 or type(layers[0]) not in kinds:
            return None
        empty = type(layers[0]) is DummyLayer  # holds nothing by design
        if not empty and not all(_filled(layer) for layer in layers):
            return None
        if len({_held(layer) for layer in layers}) != 1:
            return None
    merged = caches[0]
    for i, layer in enumerate(merged.layers):
        if isinstance(layer, DummyLayer):
            continue
        layers = [cache.layers[i] for cache in caches]
        if isinstance(layer, LinearAttentionLayer):
            _join_states(layer, layers, rows)
            continue
        keys = _join_rows([other.keys for other in layers], rows)
        values = _join_rows([other.values for other in layers], rows)
        layer.keys, layer.values = keys, values
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = max(other.cumulative_length for other in layers)
    return merged


#: The per-sequence states of a linear-attention cache layer, ``{index: [B, ...] or None}`` each.
_STATES = ("conv_states", "recurrent_states")


def _filled(layer: Any) -> bool:
    """Whether a cache layer holds a prefill: keys and values, or every linear-attention conv state (a
    recurrent state is optional: LFM2's convolution layers keep none)."""
    if hasattr(layer, "recurrent_states"):
        states = range(layer.number_of_states)
        return not layer.record_past and all(layer.is_conv_states_initialized[i] for i in states)
    return layer.is_initialized and layer.keys is not None


def _held(layer: Any) -> tuple[tuple[int, ...], ...]:
    """Which states a linear-attention cache layer holds (the indices of its conv and recurrent states);
    ``()`` for a key/value layer."""
    if not hasattr(layer, "recurrent_states"):
        return ()
    return tuple(tuple(i for i, value in getattr(layer, store).items() if value is not None) for store in _STATES)


def _join_states(layer: Any, layers: list[Any], rows: list[torch.Tensor]) -> None:
    """Rows ``rows[i]`` of each linear-attention layer's states ``[B_i, ...]`` into ``layer``, one batch (the
    states every layer holds: :func:`_held`); its length is the longest prompt's (every sequence
    right-aligned, as :func:`_join_rows` aligns the keys)."""
    for store, indices in zip(_STATES, _held(layer), strict=True):
        states = getattr(layer, store)
        for index in indices:
            parts = [getattr(other, store)[index] for other in layers]
            states[index] = torch.cat(
                [part[kept.to(part.device)].to(parts[0].device) for part, kept in zip(parts, rows, strict=True)]
            )
    layer.cumulative_length_linear = torch.stack([other.cumulative_length_linear for other in layers]).max()


def _join_rows(tensors: list[torch.Tensor], rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows ``rows[i]`` of each ``[B_i, KVH, N_i, D]``, left-padded with zeros to the longest ``N``, in one tensor."""
    length = max(t.shape[-2] for t in tensors)
    padded = [
        nn.functional.pad(t[kept.to(t.device)], (0, 0, length - t.shape[-2], 0))
        for t, kept in zip(tensors, rows, strict=True)
    ]
    return torch.cat([p.to(padded[0].device) for p in padded])
