"""Attribution signals: one entry point for every way of scoring the image tokens.

:data:`SIGNALS` is the one list of choices (nodes, CLI and evaluation read it):

* ``attention`` -- the paper's: the last prompt token's head- and layer-mean
  attention (:func:`~vea_engine.attribution.extract_attention`, unchanged);
* ``relatt`` -- ViCrop's relative attention: the question's attention over a
  generic prompt's, both prompts in one batched pass
  (:func:`~vea_engine.relatt.relative_attention`);
* ``grad`` -- gradient x input of the image-token embeddings for the first answer
  token (:func:`~vea_engine.gradient.gradient_x_input`), one forward + backward.

``sinks=True`` detects visual attention sinks by their massive activations during
that same pass (:mod:`vea_engine.sinks`) and replaces their scores by the mean of
the other tokens, before anything is normalised. Every signal returns an
:class:`~vea_engine.attribution.AttentionMap`, so denoise, smooth, blend and
everything after work on it unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from .attribution import AttentionMap, extract_attention, layer_scores
from .gradient import gradient_x_input
from .layers import LayerSelection, for_model
from .loading import VLM
from .relatt import paired_attention, relative_attention
from .sinks import (
    SINK_THRESHOLD,
    check_sink_threshold,
    exclude_sinks,
    image_token_activity,
    record_massive_activations,
    sink_flags,
)


def check_signal(signal: str, who: str = "attribute") -> str:
    """``signal`` if it is one of :data:`SIGNALS`, else a ValueError saying what to pass."""
    if signal not in SIGNALS:
        raise ValueError(
            f"{who}: signal must be one of {SIGNALS}, got {signal!r}; 'attention' is the paper's, 'relatt' divides "
            "by a generic prompt's attention, 'grad' is gradient x input."
        )
    return signal


def _keywords(*functions: Any) -> set[str]:
    skip = {"vlm", "images", "questions", "layers", "options"}
    return {name for fn in functions for name in inspect.signature(fn).parameters if name not in skip}


def _gradient_map(vlm: VLM, images: Any, questions: Any, layers: Any, **options: Any) -> AttentionMap:
    return gradient_x_input(vlm, images, questions, layers, **options).attention


#: signal -> (the function that makes its map, the functions whose keyword options it passes on)
_MAKERS: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "attention": (extract_attention, (extract_attention, layer_scores)),
    "relatt": (relative_attention, (extract_attention, layer_scores, paired_attention, relative_attention)),
    "grad": (_gradient_map, (gradient_x_input,)),
}
#: Attribution signals, the default first.
SIGNALS = tuple(_MAKERS)


def signal_options(signal: str) -> tuple[str, ...]:
    """The keyword options :func:`attribute` passes on for ``signal`` (read from the signal's functions)."""
    check_signal(signal)
    return tuple(sorted(_keywords(*_MAKERS[signal][1])))


@contextmanager
def _input_ids_of(model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the ``input_ids`` of the last forward pass of ``model`` in the scope (``{"input_ids": [B, N]}``)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[-1] > 1:
            seen["input_ids"] = ids.detach().cpu()

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _signal_map(vlm: VLM, images: Any, questions: Any, layers: Any, signal: str, options: dict) -> AttentionMap:
    return _MAKERS[signal][0](vlm, images, questions, layers, **options)


def attribute(
    vlm: VLM,
    images: Any,
    questions: str | Sequence[str],
    layers: LayerSelection | Sequence[int],
    signal: str = SIGNALS[0],
    sinks: bool = False,
    sink_threshold: float = SINK_THRESHOLD,
    **options: Any,
) -> AttentionMap:
    """Per-token evidence scores of each image for its question, by the chosen signal.

    Args:
        vlm: a loaded model.
        images: ``[B, H, W, C]`` tensor in [0, 1], or a list of same-size images.
        questions: one question, or one per image.
        layers: decoder layers: averaged (``attention``, ``relatt``); for every signal, the
            layers whose input hidden states decide the sinks.
        signal: one of :data:`SIGNALS`.
        sinks: exclude visual attention sinks (:mod:`vea_engine.sinks`) before normalising.
        sink_threshold: the massive-activation threshold of a sink (the paper's 20).
        options: passed to the signal's function: ``prompt_style``, ``template``,
            ``progress``, ``rounding`` for all; ``early_exit`` (attention, relatt);
            ``epsilon``, ``generic`` (relatt); ``sign``, ``target_ids``, ``checkpoint`` (grad).

    Returns:
        :class:`~vea_engine.attribution.AttentionMap` with ``scores [B, n_tokens]``; with
        ``signal="attention"`` and ``sinks=False`` exactly :func:`extract_attention`'s.
    """
    check_signal(signal)
    unknown = sorted(set(options) - set(signal_options(signal)))
    if unknown:
        raise ValueError(
            f"attribute: option(s) {unknown} do not apply to signal {signal!r}; its options are "
            f"{list(signal_options(signal))}."
        )
    if not isinstance(sinks, bool):
        raise ValueError(f"attribute: sinks must be True or False, got {sinks!r}.")
    selected = for_model(layers, vlm.layer_kinds, vlm.name).layers
    if sinks:
        check_sink_threshold(sink_threshold, "attribute")
    else:
        return _signal_map(vlm, images, questions, layers, signal, options)
    with record_massive_activations(vlm.model, selected) as recorded, _input_ids_of(vlm.model) as seen:
        attention = _signal_map(vlm, images, questions, layers, signal, options)
    input_ids = seen["input_ids"]  # [B', N]: B' = B, or 2B for relatt (question rows, then generic rows)
    positions = vlm.adapter.image_token_positions(input_ids, [attention.geometry.layout] * input_ids.shape[0])
    activity = image_token_activity(recorded, selected, positions)  # [L, B', n]
    flags = sink_flags(activity, sink_threshold)  # [B', n]
    flags = flags.reshape(-1, attention.batch_size, flags.shape[-1]).any(dim=0)  # [B, n]: a sink in any prompt
    return attention.with_scores(exclude_sinks(attention.scores, flags))
