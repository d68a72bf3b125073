"""Which decoder layers VEA reads: the paper's presets, user lists, or fallbacks.

Without a preset for the model (and no profile or explicit list), VEA averages
*all* decoder layers, as the reference code does (its ``Attributor`` defaults to
the whole stack: the paper's "w/o profiling" setting). ``deepest_half`` remains
available as an explicit mode.

Only softmax-attention layers have an attention row to read. On a hybrid decoder
(Qwen3.5: three linear-attention layers for every softmax layer) ``all`` and the
fallback mean every softmax-attention layer, ``deepest_half`` the deeper half of
those, and a list naming another layer is refused; the layer kinds come from
:func:`vea_engine.decoder.layer_kinds` (a plain depth means all layers are softmax).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from .config import PRESET_LAYERS, PRESET_NUM_LAYERS
from .decoder import LayerKinds, as_layer_kinds

log = logging.getLogger(__name__)

LAYER_MODES = ("preset", "all", "deepest_half", "custom")


@dataclass(frozen=True)
class LayerSelection:
    """Decoder layers to read, with where they came from.

    Attributes:
        layers: sorted, unique, 0-based decoder layer indices.
        source: ``preset:<checkpoint>``, ``fallback:all`` (mode ``preset`` without a
            matching preset), ``all``, ``deepest_half``, ``custom`` or ``profile:<file>``.
        num_layers: decoder depth the selection was made for (None = any model
            deep enough).
        scores: per-layer profiling scores (AUROC) when selected from data.
    """

    layers: tuple[int, ...]
    source: str
    num_layers: int | None = None
    scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        layers = tuple(sorted({int(layer) for layer in self.layers}))
        if not layers:
            raise ValueError(f"layers: a selection needs at least one layer ({self.source}).")
        object.__setattr__(self, "layers", layers)

    def check(self, num_layers: int | LayerKinds, who: str = "layers") -> tuple[int, ...]:
        """The layers, after checking they exist in a model with ``num_layers`` decoder layers
        (and that the selection was made for a model of that depth, when it records one).

        ``num_layers`` may be the model's :class:`~vea_engine.decoder.LayerKinds`: then every
        layer must also be a softmax-attention layer (one ValueError listing those otherwise).
        """
        kinds = as_layer_kinds(num_layers)
        num_layers = kinds.num_layers
        if self.num_layers is not None and self.num_layers != num_layers:
            raise ValueError(
                f"{who}: the layers ({shorten(self.source, 80)}) were chosen for a model with "
                f"{self.num_layers} decoder layers, but this model has {num_layers}; choose layers for this model."
            )
        bad = [layer for layer in self.layers if not 0 <= layer < num_layers]
        if bad:
            shown = f"{bad}" if len(bad) <= 8 else f"[{', '.join(map(str, bad[:8]))}, ...] ({len(bad)} in all)"
            raise ValueError(
                f"{who}: layer(s) {shown} out of range for a model with {num_layers} decoder layers "
                f"(valid 0..{num_layers - 1}); selection came from {shorten(self.source, 80)}."
            )
        return kinds.check(self.layers, who)


def describe_layers(selection: LayerSelection) -> str:
    """One line for people: which layers are read and where they came from."""
    source = selection.source
    why = {
        "fallback:all": "no pre-profiled layers for this checkpoint, so all layers (as the reference code does)",
        "all": "all layers",
        "deepest_half": "the deepest half",
        "custom": "your list",
    }.get(source, source.replace("preset:", "the paper's preset for ").replace("profile:", "the profile "))
    return f"layers {list(selection.layers)}: {why}"


def for_model(
    layers: LayerSelection | Sequence[int] | str | None,
    num_layers: int | LayerKinds,
    model_name: str = "",
    who: str = "layers",
) -> LayerSelection:
    """The one place layer choices are normalised and checked against a model.

    Args:
        layers: a :class:`LayerSelection` (checked against this model's depth and layer kinds),
            indices, a mode name or None (see :func:`select_layers`).
        num_layers: the model's :class:`~vea_engine.decoder.LayerKinds` (``vlm.layer_kinds``),
            or its decoder depth when every layer is softmax attention.
        model_name: its path or hub id (presets).
        who: what to call the argument in errors (e.g. the node that received it).

    Returns:
        A :class:`LayerSelection` valid for this model.
    """
    if isinstance(layers, LayerSelection):
        layers.check(num_layers, who)
        return layers
    return select_layers(layers, num_layers, model_name)


def preset_for(name: str, num_layers: int | None = None) -> str | None:
    """The preset checkpoint id matching a model path or hub id (by its last two or last path parts)."""
    text = str(name).rstrip("/")
    parts = PurePath(text).parts
    candidates = {text.lower(), "/".join(parts[-2:]).lower(), parts[-1].lower() if parts else ""}
    for key in PRESET_LAYERS:
        if key.lower() in candidates or key.split("/")[-1].lower() in candidates:
            if num_layers is None or PRESET_NUM_LAYERS[key] == num_layers:
                return key
    return None


#: Largest decoder layer index a layer list may name (deeper than any released VLM), and the longest
#: layer-list text read: both are checked before anything is allocated.
MAX_LAYER_INDEX = 1023
MAX_LAYER_TEXT = 2000


def shorten(text: str, limit: int = 60) -> str:
    """``repr`` of user text, cut to about ``limit`` characters (error messages stay short)."""
    text = str(text)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def parse_layer_list(text: str) -> tuple[int, ...]:
    """Parse ``"14, 15, 17"`` or ``"14-17"`` ranges into sorted unique indices.

    Bounded: at most :data:`MAX_LAYER_TEXT` characters, every index in
    ``0..MAX_LAYER_INDEX``; checked before a range is expanded.
    """
    if len(text) > MAX_LAYER_TEXT:
        raise ValueError(
            f"layers: the list is {len(text)} characters long (at most {MAX_LAYER_TEXT}); "
            "write indices like '14,15,17' or ranges like '14-17'."
        )
    layers: set[int] = set()
    for token in filter(None, (t.strip() for t in re.split(r"[,\s]+", text))):
        match = re.fullmatch(r"(\d{1,9})(?:-(\d{1,9}))?", token)
        if not match:
            raise ValueError(
                f"layers: cannot read {shorten(token, 30)} in {shorten(text)}; write 0-based indices like '14,15,17' "
                "or ranges like '14-17'."
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        if end < start or end > MAX_LAYER_INDEX:
            raise ValueError(
                f"layers: {shorten(token, 30)} is not a range of layer indices 0..{MAX_LAYER_INDEX} (low-high, low "
                "first); write e.g. '14-17'."
            )
        layers.update(range(start, end + 1))
    if not layers:
        raise ValueError(f"layers: {shorten(text)} names no layer; write indices like '14,15,17'.")
    return tuple(sorted(layers))


def select_layers(
    mode: str | Sequence[int] | None,
    num_layers: int | LayerKinds,
    model_name: str = "",
    custom: str | Sequence[int] | None = None,
) -> LayerSelection:
    """Resolve a layer choice for a model.

    Args:
        mode: ``preset`` (paper layers when ``model_name`` matches a pre-profiled
            checkpoint of the same depth, else all layers as the reference does,
            logged, source ``fallback:all``), ``all``, ``deepest_half``, ``custom``
            (uses ``custom``), a list of indices, or None (= ``preset``). "All" layers are
            the softmax-attention layers (every layer of a plain decoder); ``deepest_half``
            is the deeper half of those.
        num_layers: the model's :class:`~vea_engine.decoder.LayerKinds`, or its decoder
            depth (every layer softmax attention).
        model_name: path or hub id, to look up presets.
        custom: layer list for ``custom``: indices or text like ``"14,15,17"``.
    """
    kinds = as_layer_kinds(num_layers)  # a depth < 1 is refused there
    num_layers, attention = kinds.num_layers, kinds.attention
    if mode is not None and not isinstance(mode, str):
        custom, mode = mode, "custom"
    mode = mode or "preset"
    if mode == "preset":
        key = preset_for(model_name, num_layers)
        if key is not None:
            selection = LayerSelection(PRESET_LAYERS[key], f"preset:{key}", num_layers)
        else:
            log.warning(
                "no pre-profiled layers for %r (%d layers); averaging all %d %slayers, as the reference does "
                "(the paper's 'w/o profiling' setting). Profile the model or pass explicit layers for better maps.",
                model_name,
                num_layers,
                len(attention),
                "softmax-attention " if kinds.hybrid else "",
            )
            selection = LayerSelection(attention, "fallback:all", num_layers)
    elif mode == "all":
        selection = LayerSelection(attention, "all", num_layers)
    elif mode == "deepest_half":
        selection = LayerSelection(attention[len(attention) // 2 :], "deepest_half", num_layers)
    elif mode == "custom":
        if custom is None or (isinstance(custom, str) and not custom.strip()):
            raise ValueError("layers: mode 'custom' needs a layer list, e.g. '14,15,17'.")
        layers = parse_layer_list(custom) if isinstance(custom, str) else tuple(sorted({int(v) for v in custom}))
        selection = LayerSelection(layers, "custom", num_layers)
    else:
        raise ValueError(f"layers: mode must be one of {LAYER_MODES}, got {mode!r}.")
    selection.check(kinds)
    return selection
