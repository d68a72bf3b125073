"""Plant attention on chosen key positions of a real model, independent of the capture code.

Forward hooks add a large component along one head dimension to the key projections
of the chosen positions and to the query projection of the query position, in the
selected decoder layers. That dimension pairs with the lowest RoPE frequency, so
rotation leaves ``q . k`` almost unchanged and those keys dominate the softmax
(the planted keys share the attention, everything else gets ~0).

``key_positions`` is a fixed list, or a callable ``input_ids [B, N] -> positions``
evaluated once per forward pass of the whole model (so code that runs several
forward passes, e.g. profiling over many samples, can be planted per sample).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from vea_engine.capture import decoder_attention_modules

STRENGTH = 40.0

KeyPositions = Sequence[int] | Callable[[torch.Tensor], Sequence[int]]


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
        strength: added along the planted dimension of q and k.
    """
    modules = decoder_attention_modules(vlm.model)
    current: dict[str, list[int]] = {"keys": [] if callable(key_positions) else [int(p) for p in key_positions]}
    handles = []
    if callable(key_positions):

        def set_keys(module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if input_ids is not None and input_ids.shape[1] > 1:  # prefill (not a decoding step)
                current["keys"] = [int(p) for p in key_positions(input_ids)]

        handles.append(vlm.model.register_forward_pre_hook(set_keys, with_kwargs=True))
    for layer in layers:
        attn = modules[layer]
        head_dim = attn.head_dim
        dim = head_dim // 2 - 1  # pairs with dim head_dim - 1 at the lowest rotary frequency

        def add_k(module, args, output, dim=dim, head_dim=head_dim):
            if output.shape[1] == 1:  # a decoding step: the planted keys are already in the cache
                return output
            out = output.clone()
            for pos in current["keys"]:
                out[:, pos, dim::head_dim] += strength
            return out

        def add_q(module, args, output, dim=dim, head_dim=head_dim):
            out = output.clone()
            out[:, query_position, dim::head_dim] += strength
            return out

        handles += [attn.k_proj.register_forward_hook(add_k), attn.q_proj.register_forward_hook(add_q)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
