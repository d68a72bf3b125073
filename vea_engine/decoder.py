"""Where a VLM's text decoder and its layers are, and what kind each layer is: the one place that
walks model structure.

Decoders are no longer stacks of identical softmax-attention layers. Qwen3.5 runs three Gated
DeltaNet (linear attention) layers for every softmax layer, LFM2 mixes short convolutions with
attention, Gemma 3/4 alternate sliding-window and full layers, Llama 4 chunks its attention, and
Gemma 4 lets its last layers reuse the keys and values of an earlier one. :func:`layer_kinds`
reads this once, from the text config (``layer_types``, ``sliding_window``,
``attention_chunk_size``, ``num_kv_shared_layers``), and checks it against the modules. VEA reads
attention rows only where there is a softmax over the keys (:attr:`LayerKinds.attention`); every
layer choice (presets, ``all``, ``deepest_half``, custom lists, profiles) is checked against it
(:meth:`LayerKinds.check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

#: Attribute paths of the text decoder in transformers VLMs, tried in order.
_TEXT_MODEL_PATHS = (
    "language_model",
    "model.language_model",
    "model.text_model",
    "text_model",
    "model",
    "language_model.model",  # Llama 4: a causal LM (no layers of its own) beside the vision model
)

#: ``layer_types`` values of layers that compute softmax attention through transformers' attention
#: interface (the rows VEA captures). Every other kind (``linear_attention``: Gated DeltaNet, Mamba;
#: ``conv``: LFM2's short convolutions; ...) has no attention matrix and is never read.
SOFTMAX_LAYER_KINDS = ("full_attention", "sliding_attention", "chunked_attention")

#: Older ``layer_types`` spellings, read as the current ones (as transformers remaps them).
_LEGACY_KINDS = {"attention": "full_attention", "mamba": "linear_attention"}


@dataclass(frozen=True)
class LayerKind:
    """What one decoder layer computes, as its config declares it.

    Attributes:
        kind: the config's ``layer_types`` entry (``full_attention``, ``sliding_attention``,
            ``chunked_attention``, ``linear_attention``, ``conv``...); ``full_attention`` for
            configs without ``layer_types``.
        window: keys a query sees, for sliding-window (``sliding_window``) and chunked
            (``attention_chunk_size``) layers; None = the whole causal context. The capture
            applies the model's own mask, so this is descriptive.
        kv_layer: the layer whose keys and values this layer attends with: itself, or for a
            KV-shared layer (``num_kv_shared_layers``) the last earlier unshared layer of the same
            kind. The capture reads the keys the attention call receives, i.e. these.
    """

    kind: str
    window: int | None = None
    kv_layer: int | None = None

    @property
    def softmax(self) -> bool:
        """Whether the layer has a softmax attention row VEA can read."""
        return self.kind in SOFTMAX_LAYER_KINDS


@dataclass(frozen=True)
class LayerKinds:
    """The kind of every text decoder layer of one model, in layer order.

    Attributes:
        layers: one :class:`LayerKind` per decoder layer (``len`` = decoder depth).
    """

    layers: tuple[LayerKind, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("a text decoder needs at least one layer.")
        if not self.attention:
            kinds = sorted({layer.kind for layer in self.layers})
            raise ValueError(
                f"this decoder has no softmax-attention layer (its layer kinds: {kinds}); VEA reads attention "
                f"rows and needs at least one layer of kind {list(SOFTMAX_LAYER_KINDS)}."
            )

    @classmethod
    def uniform(cls, num_layers: int) -> LayerKinds:
        """``num_layers`` full-attention layers (a plain decoder, or a depth given as a number)."""
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
        return cls(tuple(LayerKind("full_attention", None, index) for index in range(int(num_layers))))

    @property
    def num_layers(self) -> int:
        """The decoder depth (every layer, softmax or not)."""
        return len(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def attention(self) -> tuple[int, ...]:
        """The softmax-attention layers, ascending: the only layers VEA reads."""
        return tuple(index for index, layer in enumerate(self.layers) if layer.softmax)

    @property
    def hybrid(self) -> bool:
        """Whether some layers are not softmax attention (linear attention, convolutions...)."""
        return len(self.attention) != len(self.layers)

    def describe(self) -> str:
        """One line for people: depth and which layers are softmax attention."""
        if not self.hybrid:
            return f"{self.num_layers} decoder layers, all softmax attention"
        others = sorted({layer.kind for layer in self.layers if not layer.softmax})
        return (
            f"{self.num_layers} decoder layers; softmax attention at {list(self.attention)}, "
            f"the others are {', '.join(others)}"
        )

    def check(self, layers: Sequence[int], who: str = "layers") -> tuple[int, ...]:
        """``layers`` as sorted unique indices, after checking each is a softmax-attention layer.

        Raises:
            ValueError: one message naming the offending layers and listing the layers that can be
                read, when a layer is out of range or is not softmax attention.
        """
        chosen = tuple(sorted({int(layer) for layer in layers}))
        readable = f"of the attention layers {list(self.attention)}" if self.hybrid else f"0..{self.num_layers - 1}"
        if not chosen:
            raise ValueError(f"{who}: no layer given; use indices {readable}.")
        out = [layer for layer in chosen if not 0 <= layer < self.num_layers]
        if out:
            shown = f"{out}" if len(out) <= 8 else f"[{', '.join(map(str, out[:8]))}, ...] ({len(out)} in all)"
            raise ValueError(
                f"{who}: layer(s) {shown} out of range for a model with {self.num_layers} decoder layers; "
                f"use indices {readable}."
            )
        other = [layer for layer in chosen if not self.layers[layer].softmax]
        if other:
            kinds = sorted({self.layers[layer].kind for layer in other})
            raise ValueError(
                f"{who}: layer(s) {other} are {'/'.join(kinds)} layers, which have no attention matrix to read; "
                f"choose among the softmax-attention layers {list(self.attention)}."
            )
        return chosen


def as_layer_kinds(decoder: LayerKinds | int) -> LayerKinds:
    """A :class:`LayerKinds`; a plain depth means that many full-attention layers."""
    if isinstance(decoder, LayerKinds):
        return decoder
    if isinstance(decoder, bool) or not isinstance(decoder, int):
        raise ValueError(f"num_layers must be a decoder depth (int) or LayerKinds, got {decoder!r}.")
    return LayerKinds.uniform(decoder)


def text_config(config: Any) -> Any:
    """The text decoder's config of a (VLM) config."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def kinds_from_config(config: Any, num_layers: int | None = None) -> LayerKinds:
    """The :class:`LayerKinds` a (VLM or text) config declares.

    Args:
        config: a transformers config (the text config is looked up).
        num_layers: the decoder depth when known from the modules; default the config's
            ``num_hidden_layers``.
    """
    text = text_config(config)
    depth = int(num_layers if num_layers is not None else text.num_hidden_layers)
    declared = getattr(text, "layer_types", None)
    if declared is None:
        kinds = ["full_attention"] * depth
    else:
        kinds = [_LEGACY_KINDS.get(str(kind), str(kind)) for kind in declared][:depth]
        if len(kinds) != depth:
            raise ValueError(
                f"the text config declares {len(declared)} layer_types for {depth} decoder layers; the checkpoint's "
                "config.json is inconsistent (fix layer_types or num_hidden_layers)."
            )
    windows = {
        "sliding_attention": getattr(text, "sliding_window", None),
        "chunked_attention": getattr(text, "attention_chunk_size", None),
    }
    shared = int(getattr(text, "num_kv_shared_layers", 0) or 0)
    first_shared = depth - shared if 0 < shared < depth else depth
    layers = []
    for index, kind in enumerate(kinds):
        kv_layer = index
        if index >= first_shared:  # reuses the last unshared layer of its kind (Gemma 3n / Gemma 4)
            sources = [j for j in range(first_shared) if kinds[j] == kind]
            kv_layer = sources[-1] if sources else index
        window = windows.get(kind)
        layers.append(LayerKind(kind, int(window) if window else None, kv_layer))
    return LayerKinds(tuple(layers))


def text_decoder(model: nn.Module) -> nn.Module:
    """The text decoder module of a VLM (the one with the ``layers`` list)."""
    for path in _TEXT_MODEL_PATHS:
        obj = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, nn.Module) and hasattr(obj, "layers"):
            return obj
    raise ValueError(f"cannot find the text decoder of {type(model).__name__} (no language_model.layers).")


def text_decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The text decoder layers, in order (their count is the model's decoder depth)."""
    text = text_decoder(model)
    layers = getattr(text, "layers", None)
    if layers is None:
        raise ValueError(f"{type(text).__name__} has no decoder 'layers'; this model type is not supported.")
    return list(layers)


def layer_kinds(model: nn.Module) -> LayerKinds:
    """The kind of every text decoder layer of a loaded model (config read against the modules).

    Raises:
        ValueError: the config calls a layer softmax attention but it has no ``self_attn`` module.
    """
    layers = text_decoder_layers(model)
    decoder = text_decoder(model)
    config = getattr(decoder, "config", None)
    if config is None:
        config = getattr(model, "config", None)
    kinds = kinds_from_config(config, len(layers)) if config is not None else LayerKinds.uniform(len(layers))
    for index in kinds.attention:
        attn = getattr(layers[index], "self_attn", None)
        if attn is None:
            raise ValueError(
                f"decoder layer {index} of {type(model).__name__} is declared {kinds.layers[index].kind!r} but has "
                "no 'self_attn' module; this model type is not supported."
            )
        if bool(getattr(attn, "is_kv_shared_layer", False)) != (kinds.layers[index].kv_layer != index):
            raise ValueError(
                f"decoder layer {index} of {type(model).__name__}: its config and its module disagree on whether it "
                "reuses an earlier layer's keys (num_kv_shared_layers); the checkpoint's config.json is inconsistent."
            )
    return kinds


def attention_layers(model: nn.Module) -> tuple[int, ...]:
    """The softmax-attention decoder layers of a loaded model, ascending (the layers VEA reads)."""
    return layer_kinds(model).attention


def decoder_attention_modules(model: nn.Module) -> dict[int, nn.Module]:
    """``layer index -> self-attention module`` of every softmax-attention decoder layer, in layer order.

    On a plain decoder the keys are ``0..L-1``; on a hybrid one only the softmax layers appear
    (linear-attention and convolution layers have no attention module to capture).
    """
    layers = text_decoder_layers(model)
    return {index: layers[index].self_attn for index in layer_kinds(model).attention}


def key_source_layers(model: nn.Module) -> list[int]:
    """For each text decoder layer, the layer whose keys and values it attends with
    (:attr:`LayerKind.kv_layer`): its own index, except for a KV-shared layer (Gemma 4's
    ``num_kv_shared_layers``), which reuses those of the last earlier unshared layer of its kind."""
    return [kind.kv_layer for kind in layer_kinds(model).layers]
