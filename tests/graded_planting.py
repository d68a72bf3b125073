"""Plant *graded* attention logits, per sequence of a batch (extends ``tests/planting.py``).

``tests/planting.py`` pins chosen keys to one strength, the same in every sequence.
Here each sequence gets its own map ``key position -> logit``: the query of the last
position is pinned to ``STRENGTH * e_dim`` and each listed key to
``logit / (STRENGTH * scaling) * e_dim`` in every head, so ``q . k * scaling`` is that
logit (up to the lowest RoPE frequency's rotation, ~1e-3 relative over these
lengths). Keys not listed keep their own projections (logits of a few units at most,
so listed logits of 50 and more take the whole row). The pins sit where ``tests/planting.py``
puts them: on ``k_proj`` / ``q_proj``, or on the per-head norm after them (LFM2's
``k_layernorm`` / ``q_layernorm``, Qwen3's and Gemma 3's ``k_norm`` / ``q_norm``), so the norm
cannot rescale them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from tests.planting import STRENGTH, quiet_dim
from vea_engine.decoder import decoder_attention_modules

#: ``input_ids [B, N] -> one {position: logit} per sequence``, evaluated at the start of each forward pass.
RowLogits = Callable[[torch.Tensor], Sequence[dict[int, float]]]


@contextmanager
def graded(vlm, layers: Sequence[int], row_logits: RowLogits):
    """Within the scope, the last query of each sequence sees the planted logits in ``layers``."""
    modules = decoder_attention_modules(vlm.model)
    current: dict[str, Sequence[dict[int, float]]] = {}

    def set_rows(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None and input_ids.shape[1] > 1:
            current["rows"] = row_logits(input_ids)

    handles = [vlm.model.register_forward_pre_hook(set_rows, with_kwargs=True)]
    for layer in layers:
        attn = modules[layer]
        head_dim, scaling = attn.head_dim, attn.scaling
        dim = quiet_dim(attn)
        q_site = next((getattr(attn, n) for n in ("q_norm", "q_layernorm") if hasattr(attn, n)), attn.q_proj)
        k_site = next((getattr(attn, n) for n in ("k_norm", "k_layernorm") if hasattr(attn, n)), attn.k_proj)

        def pin_k(module, args, out, head_dim=head_dim, scaling=scaling, dim=dim):
            if out.shape[1] == 1:
                return out
            out = out.clone()
            heads = out.view(*out.shape[:2], -1, head_dim)  # [B, N, KVH, head_dim]: a view of ``out``, flat or per head
            for b, logits in enumerate(current["rows"]):
                for position, logit in logits.items():
                    heads[b, position] = 0
                    heads[b, position, :, dim] = logit / (STRENGTH * scaling)
            return out

        def pin_q(module, args, out, head_dim=head_dim, dim=dim):
            if out.shape[1] == 1:
                return out
            out = out.clone()
            heads = out.view(*out.shape[:2], -1, head_dim)  # [B, N, H, head_dim]
            heads[:, -1] = 0
            heads[:, -1, :, dim] = STRENGTH
            return out

        handles += [k_site.register_forward_hook(pin_k), q_site.register_forward_hook(pin_q)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
