"""Capture a few attention rows while the model runs on SDPA / flash attention.

VEA needs, at a handful of decoder layers, the attention of one query position
(the last prompt token) over all keys. Eager attention with
``output_attentions=True`` materialises ``[B, heads, N, N]`` at *every* layer;
here the real attention still runs on the model's fast kernel and, inside the
same attention call, we additionally compute only the requested rows:

    rows = softmax(q[:, :, R] @ repeat_kv(k)^T * scaling + mask[:, :, R])   # [B, H, |R|, K]

from the post-RoPE ``q``/``k`` the attention function receives, with the
model's own mask (causal, padding, sliding window) applied before the softmax,
then averaged over heads. Extra memory is ``O(B * H * |R| * K)`` per layer.

Dtype, as the reference code: eager attention computes the logits in the model's
dtype, the softmax in float32 and rounds the probabilities back to the model's
dtype; the reference then averages the heads of the last prompt row in that dtype
and converts, ``weights[0, :, -1, :].mean(0).float()``. Capture does the same on
every kernel (on eager it reads the kernel's own weights; elsewhere it computes the
rows with eager's arithmetic), so a bfloat16 model gives the reference's rows bit
for bit. ``head_mean_dtype=torch.float32`` is the opt-in for more precision: rows
computed and averaged in float32.

Mechanism: a function registered under a private name with transformers'
``AttentionInterface`` (and the matching mask function with
``AttentionMaskInterface``) wraps the base implementation. Inside
:func:`capture_attention_rows` the text decoder's config points at that name;
on exit -- always, in ``finally`` -- the original implementation is restored.
Nothing about transformers' classes is patched, and outside the context the
model is exactly as it was.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from . import compat
from .config import MASK_DTYPE
from .decoder import decoder_attention_modules, layer_kinds, text_decoder

__all__ = [
    "AttentionRecorder",
    "StopForward",
    "attention_rows",
    "capture_attention_rows",
    "decoder_attention_modules",
    "head_mean",
]

_CAPTURE_PREFIX = "vea_capture+"
_ACTIVE: contextvars.ContextVar[AttentionRecorder | None] = contextvars.ContextVar("vea_capture", default=None)


class StopForward(Exception):
    """Raised inside the forward pass once every requested layer was recorded."""


@dataclass
class AttentionRecorder:
    """Rows recorded during one capture scope.

    Attributes:
        layers: decoder layer indices (0-based) whose rows are recorded.
        query_positions: query positions to record; negative values count from
            the end of the (left-padded) sequence, ``-1`` is the last prompt token.
        rows: ``layer -> [B, R, K]`` float32 head-mean attention rows, ``R =
            len(query_positions)``, ``K`` = number of keys.
        per_head: ``layer -> [B, H, R, K]`` float32, when ``keep_heads`` was requested.
        head_mean_dtype: dtype the rows are computed and averaged over heads in; None (the
            reference's arithmetic) = the model's dtype, converted to float32 after the mean.
    """

    layers: tuple[int, ...]
    query_positions: tuple[int, ...] = (-1,)
    keep_heads: bool = False
    stop_after_last: bool = False
    head_mean_dtype: torch.dtype | None = None
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    per_head: dict[int, torch.Tensor] = field(default_factory=dict)
    _modules: dict[int, int] = field(default_factory=dict, repr=False)  # id(attn module) -> layer index
    _base: str = field(default="sdpa", repr=False)
    _first: int = field(default=-1, repr=False)  # id of the first softmax layer's attention module: a pass starts there
    _prefill: bool = field(default=False, repr=False)  # whether the running pass is a prefill

    def stacked(self) -> torch.Tensor:
        """All recorded rows as one tensor ``[L, B, R, K]`` in ``self.layers`` order."""
        missing = [layer for layer in self.layers if layer not in self.rows]
        if missing:
            raise RuntimeError(
                f"attention of layers {missing} was not recorded; the forward pass did not reach them "
                "(was it interrupted, or do these layers not use the attention interface?)"
            )
        device = self.rows[self.layers[0]].device  # layers may sit on different devices (device_map="auto")
        return torch.stack([self.rows[layer].to(device) for layer in self.layers])


def _ensure_registered(base: str) -> str:
    """Register the capturing wrapper (masked like ``base``) under a private name; returns that name."""
    name = _CAPTURE_PREFIX + base
    if not compat.is_registered(name):
        kernels = compat.mask_kernels()
        if base not in kernels:
            raise ValueError(f"attention implementation {base!r} cannot be captured; use one of {sorted(kernels)}.")
        compat.register_kernel(name, _capturing_attention, like=base)
    return name


def _capturing_attention(
    module: nn.Module,
    query: torch.Tensor,  # [B, H, Q, D] post-RoPE
    key: torch.Tensor,  # [B, KVH, K, D] post-RoPE
    value: torch.Tensor,  # [B, KVH, K, D]
    attention_mask: torch.Tensor | None,
    **kwargs,
):
    recorder = _ACTIVE.get()
    base = recorder._base if recorder is not None else _base_name(module)
    output = compat.attention_function(base, module)(module, query, key, value, attention_mask, **kwargs)
    if recorder is None:
        return output
    if id(module) == recorder._first:
        recorder._prefill = query.shape[2] > 1  # prefill only; decoding steps are not attributed
    layer = recorder._modules.get(id(module))
    if layer is not None and recorder._prefill:
        # A prefill may hand a layer its last query alone (Gemma 4's KV-shared layers under
        # ``logits_to_keep=1``): that layer has the last row only.
        if query.shape[2] == 1 and recorder.query_positions != (-1,):
            raise RuntimeError(
                f"layer {layer} ran only the last query of the prompt, so query rows {recorder.query_positions} "
                "cannot be recorded; run the forward pass without logits_to_keep to record rows other than -1."
            )
        positions = [p % query.shape[2] for p in recorder.query_positions]
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None  # eager: [B, H, Q, K]
        if weights is not None and weights.shape[2] == query.shape[2]:
            pass  # the kernel materialised the matrix (eager): its own weights, what output_attentions gives
        else:
            weights = attention_rows(
                query,
                key,
                attention_mask,
                recorder.query_positions,
                scaling=kwargs.get("scaling", getattr(module, "scaling", None)),
                softcap=kwargs.get("softcap"),
                sliding_window=kwargs.get("sliding_window"),
                dtype=recorder.head_mean_dtype,
            )  # [B, H, R, K]
            positions = list(range(len(positions)))
        recorder.rows[layer] = head_mean(weights, positions, recorder.head_mean_dtype)  # [B, R, K]
        if recorder.keep_heads:
            index = torch.tensor(positions, device=weights.device)
            recorder.per_head[layer] = weights.index_select(2, index).to(MASK_DTYPE)  # [B, H, R, K]
        if recorder.stop_after_last and all(index in recorder.rows for index in recorder.layers):
            raise StopForward
    return output


def head_mean(weights: torch.Tensor, positions: Sequence[int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Head-mean rows ``[B, R, K]`` float32 of attention weights ``[B, H, Q, K]`` at query ``positions``.

    Each row is averaged exactly as the reference code averages its one row,
    ``weights[b, :, p, :].mean(0).float()``: in the weights' own dtype (or ``dtype``), one
    ``[H, K]`` slice at a time (the same reduction, so the same rounding), then converted.
    """
    dtype = weights.dtype if dtype is None else dtype
    return torch.stack(
        [torch.stack([weights[b, :, p, :].to(dtype).mean(0) for p in positions]) for b in range(weights.shape[0])]
    ).to(MASK_DTYPE)


def _base_name(module: nn.Module) -> str:
    name = compat.get_attn_implementation(module.config) or "sdpa"
    return name.removeprefix(_CAPTURE_PREFIX)


def attention_rows(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    query_positions: Sequence[int],
    scaling: float | None = None,
    softcap: float | None = None,
    sliding_window: int | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax attention of selected query rows, with eager attention's arithmetic.

    The logits are computed in ``dtype`` (default: the query's, i.e. the model's), the
    softmax in float32, and the probabilities rounded back to ``dtype``: what eager
    attention's ``output_attentions`` holds. ``dtype=torch.float32`` computes everything
    in float32 (more precise than eager in a half-precision model).

    Args:
        query: ``[B, H, Q, D]`` post-RoPE queries.
        key: ``[B, KVH, K, D]`` post-RoPE keys; ``H`` must be a multiple of ``KVH`` (GQA).
        attention_mask: the mask the attention function received: ``None`` (pure
            causal), a 4D boolean ``[B|1, 1|H, Q, K]`` (True = attend), a 4D additive
            float mask, or a 2D ``[B, K]`` padding mask (flash attention; 1 = keep).
        query_positions: row indices into ``Q`` (negative from the end).
        scaling: logit scale; defaults to ``D ** -0.5``.
        softcap: optional tanh logit soft-capping (Gemma 2).
        sliding_window: only used with a 2D/None mask (flash path).
        dtype: the dtype of the logits and of the returned probabilities.

    Returns:
        ``[B, H, R, K]`` attention probabilities in ``dtype``, each row summing to 1.
    """
    batch, heads, q_len, dim = query.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    if heads % kv_heads:
        raise ValueError(f"query heads {heads} are not a multiple of key/value heads {kv_heads}")
    rows_index = torch.tensor([p % q_len for p in query_positions], device=query.device)
    scale = dim**-0.5 if scaling is None else scaling
    n_rows = rows_index.numel()
    # GQA without repeat_kv: query head h reads key head h // (H / KVH), so group the queries by key head.
    dtype = query.dtype if dtype is None else dtype
    q = query.index_select(2, rows_index).to(dtype)  # [B, H, R, D]
    q = q.reshape(batch, kv_heads, (heads // kv_heads) * n_rows, dim)  # [B, KVH, rep * R, D]
    logits = torch.matmul(q, key.to(dtype).transpose(-1, -2)) * scale  # [B, KVH, rep * R, K]
    logits = logits.reshape(batch, heads, n_rows, k_len)  # [B, H, R, K]
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    # Absolute key position of each selected query row (keys may include a cache prefix).
    q_abs = rows_index + (k_len - q_len)  # [R]
    k_abs = torch.arange(k_len, device=query.device)  # [K]
    if attention_mask is None or attention_mask.ndim == 2:
        allowed = k_abs[None, :] <= q_abs[:, None]  # [R, K] causal
        if sliding_window is not None:
            allowed = allowed & (k_abs[None, :] > q_abs[:, None] - sliding_window)
        allowed = allowed[None, None]  # [1, 1, R, K]
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, -k_len:].bool()  # [B, 1, R, K]
        logits = logits.masked_fill(~allowed, float("-inf"))
    else:
        mask = attention_mask[..., -k_len:]  # [B|1, 1|H, Q|1, K]
        if mask.shape[2] != 1:
            mask = mask.index_select(2, rows_index)  # [B|1, 1|H, R, K]
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.to(dtype)
    return torch.softmax(logits, dim=-1, dtype=torch.float32).to(dtype)


@contextmanager
def capture_attention_rows(
    model: nn.Module,
    layers: Sequence[int],
    query_positions: Sequence[int] = (-1,),
    keep_heads: bool = False,
    stop_after_last: bool = False,
    head_mean_dtype: torch.dtype | None = None,
) -> Iterator[AttentionRecorder]:
    """Record head-mean attention rows of ``layers`` during forward passes in this scope.

    Args:
        model: a transformers VLM (text decoder reachable as ``language_model``).
        layers: 0-based decoder layer indices, each a softmax-attention layer
            (:func:`~vea_engine.decoder.layer_kinds`).
        query_positions: query rows to record (``-1`` = last prompt token).
        keep_heads: also keep per-head rows ``[B, H, R, K]``.
        stop_after_last: raise :class:`StopForward` once all layers are recorded, so the
            caller can skip the rest of the network (catch it around the forward).
        head_mean_dtype: None (the reference's arithmetic): rows in the model's dtype, averaged
            over heads in it, then converted to float32; ``torch.float32``: the opt-in for
            precision, rows computed and averaged in float32.

    Yields:
        The :class:`AttentionRecorder`; ``recorder.rows[layer]`` is ``[B, R, K]`` float32.
    """
    modules = decoder_attention_modules(model)  # softmax-attention layers only
    layers = tuple(int(layer) for layer in layers)
    layer_kinds(model).check(layers, "capture_attention_rows: layers")
    if not query_positions:
        raise ValueError("query_positions must name at least one query row, e.g. (-1,) for the last prompt token.")
    configs = {id(m.config): m.config for m in modules.values()}
    text_config = getattr(text_decoder(model), "config", None)
    if text_config is not None:
        configs[id(text_config)] = text_config
    saved = {key: compat.raw_attn_implementation(cfg) for key, cfg in configs.items()}
    bases = {_base_name(m) for m in modules.values()}
    if len(bases) != 1:
        raise ValueError(f"decoder layers use mixed attention implementations {sorted(bases)}; cannot capture.")
    base = bases.pop()
    recorder = AttentionRecorder(
        layers=layers,
        query_positions=tuple(int(p) for p in query_positions),
        keep_heads=keep_heads,
        stop_after_last=stop_after_last,
        head_mean_dtype=head_mean_dtype,
        _modules={id(modules[layer]): layer for layer in layers},
        _base=base,
        _first=id(next(iter(modules.values()))),  # the first softmax layer: it sees every prefill query
    )
    name = _ensure_registered(base)
    token = _ACTIVE.set(recorder)
    try:
        for cfg in configs.values():
            compat.set_attn_implementation(cfg, name)
        yield recorder
    finally:
        for key, cfg in configs.items():
            compat.set_attn_implementation(cfg, saved[key])
        _ACTIVE.reset(token)
