"""Visual attention sinks: detect them from the hidden states, exclude them before normalising.

"See What You Are Told" (ICLR 2025) shows that some image tokens -- *visual sink
tokens* -- receive massive attention whatever the question, and that they are
recognised by their hidden states: a few hidden dimensions carry massive
activations. Their criterion is ``phi(h) = max_{d in sink dims} |RMSNorm(h)_d| >= 20``
on the residual stream ``h`` entering a decoder layer.

Here (an honest, question-independent test, cheap to capture during the pass that
already runs):

* :func:`massive_activation` -- ``phi(h) = max_d |h_d| / rms(h)`` over *all* hidden
  dimensions (the paper restricts ``d`` to sink dimensions found from the BOS
  token; a maximum over all dimensions flags every token the paper flags, and for a
  non-massive vector stays near ``sqrt(2 ln D)``, far below 20 for real hidden sizes;
  it can never exceed ``sqrt(D)``, so models with ``D < 400`` have no sinks at the
  default threshold);
* :func:`record_massive_activations` -- scoped forward pre-hooks on the selected
  decoder layers that keep ``phi`` of every position, ``[B, N]`` per layer (no hidden
  state is stored);
* :func:`sink_flags` -- a token is a sink when ``phi >= threshold`` at a strict
  majority of the selected layers;
* :func:`exclude_sinks` -- each sink's score is replaced by the mean score of the
  image's other tokens (neutral for min-max: it neither becomes the peak nor the
  floor). An image whose tokens are all flagged is left unchanged.

Attention *scores* are not used to detect sinks: a focused evidence token is just
as much an outlier of the attention row as a sink, and removing it would remove the
evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .config import MASK_DTYPE
from .decoder import key_source_layers, text_decoder_layers

log = logging.getLogger(__name__)

#: The massive-activation threshold ``tau`` of "See What You Are Told" (on RMS-normalised hidden states).
SINK_THRESHOLD = 20.0


def massive_activation(hidden: torch.Tensor) -> torch.Tensor:
    """``max_d |h_d| / rms(h)`` of every position, in float32.

    Args:
        hidden: ``[B, N, D]`` hidden states (any float dtype).

    Returns:
        ``[B, N]`` float32, between 1 (all components equal in size) and ``sqrt(D)``
        (one component holds the whole vector); 0 for a zero vector.
    """
    h = hidden.detach().to(MASK_DTYPE)  # [B, N, D]
    rms = h.pow(2).mean(dim=-1).sqrt()  # [B, N]
    peak = h.abs().amax(dim=-1)  # [B, N]
    return torch.where(rms > 0, peak / rms.clamp_min(torch.finfo(MASK_DTYPE).tiny), torch.zeros_like(peak))


@contextmanager
def record_massive_activations(model: nn.Module, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Within the scope, keep :func:`massive_activation` of the input of each of ``layers``.

    Args:
        model: a transformers VLM (text decoder reachable as ``language_model``).
        layers: 0-based decoder layers; the residual stream *entering* each is read. A KV-shared
            layer (Gemma 4) attends with the keys of an earlier layer, made from that layer's
            input, so that input is read (the prefill runs it on the last position only).

    Yields:
        ``layer -> [B, N]`` float32 on the CPU, filled by every forward pass in the
        scope (a later pass overwrites an earlier one). Hooks are removed on exit.
    """
    decoder_layers = text_decoder_layers(model)
    bad = [layer for layer in layers if not 0 <= int(layer) < len(decoder_layers)]
    if not layers or bad:
        raise ValueError(
            f"record_massive_activations: layers {list(layers)} are invalid for a model with "
            f"{len(decoder_layers)} decoder layers; use indices 0..{len(decoder_layers) - 1}."
        )
    recorded: dict[int, torch.Tensor] = {}

    def hook(module, args, kwargs, layer):
        hidden = args[0] if args else kwargs["hidden_states"]  # [B, N, D]
        if hidden.shape[1] > 1:  # prefill only
            recorded[layer] = massive_activation(hidden).cpu()

    sources = key_source_layers(model)  # the layer whose keys each layer attends with
    handles = [
        decoder_layers[sources[int(layer)]].register_forward_pre_hook(
            lambda m, a, k, layer=int(layer): hook(m, a, k, layer), with_kwargs=True
        )
        for layer in layers
    ]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def image_token_activity(
    recorded: dict[int, torch.Tensor], layers: Sequence[int], positions: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The recorded ``phi`` at each sequence's image-token positions.

    Args:
        recorded: ``layer -> [B, N]`` from :func:`record_massive_activations`.
        layers: the layers to read, in order.
        positions: one ``[n]`` position tensor per sequence (the same ``n`` for all).

    Returns:
        ``[L, B, n]`` float32.
    """
    missing = [layer for layer in layers if layer not in recorded]
    if missing:
        raise RuntimeError(f"image_token_activity: layers {missing} were not reached by the forward pass.")
    return torch.stack(
        [torch.stack([recorded[layer][b, pos.cpu()] for b, pos in enumerate(positions)]) for layer in layers]
    )


def check_sink_threshold(threshold: float, who: str = "sink_flags") -> float:
    """``threshold`` if it can separate sinks (a finite number above 1), else a ValueError saying what to pass."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 1 < threshold < float("inf"):
        raise ValueError(
            f"{who}: sink threshold = {threshold!r} must be a finite number above 1 (every vector has phi >= 1); "
            f"use e.g. the paper's {SINK_THRESHOLD:g}."
        )
    return float(threshold)


def sink_flags(activity: torch.Tensor, threshold: float = SINK_THRESHOLD) -> torch.Tensor:
    """Which tokens are sinks: ``phi >= threshold`` at a strict majority of the layers.

    Args:
        activity: ``[L, B, n]`` massive-activation values (:func:`image_token_activity`).
        threshold: ``tau``; the paper's 20 by default. Must be > 1 (every vector has ``phi >= 1``).

    Returns:
        ``[B, n]`` bool.
    """
    check_sink_threshold(threshold)
    if activity.ndim != 3:
        raise ValueError(f"sink_flags: expected activity [L, B, n], got {tuple(activity.shape)}")
    votes = (activity >= threshold).sum(dim=0)  # [B, n]
    return votes * 2 > activity.shape[0]


def exclude_sinks(scores: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Replace each sink's score by the mean score of the same image's other tokens.

    Args:
        scores: ``[B, n]`` per-token scores (before any normalisation).
        flags: ``[B, n]`` bool, True for sinks (:func:`sink_flags`).

    Returns:
        ``[B, n]`` scores of ``scores``' dtype; an image without sinks, or with every
        token flagged (nothing to take a mean of; logged), is returned unchanged.
    """
    if flags.shape != scores.shape:
        raise ValueError(f"exclude_sinks: flags {tuple(flags.shape)} do not match scores {tuple(scores.shape)}")
    flags = flags.to(device=scores.device, dtype=torch.bool)
    out = scores.clone()
    for b in range(scores.shape[0]):
        sinks = flags[b]
        if not sinks.any():
            continue
        if sinks.all():
            log.warning("image %d: every image token looks like an attention sink; left unchanged", b)
            continue
        out[b, sinks] = scores[b, ~sinks].mean()
    return out
