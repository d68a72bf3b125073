"""Where a VLM's text decoder and its layers are: the one place that walks model structure."""

from __future__ import annotations

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


def decoder_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every text decoder layer, in layer order."""
    modules = []
    for index, layer in enumerate(text_decoder_layers(model)):
        attn = getattr(layer, "self_attn", None)
        if attn is None:
            raise ValueError(f"decoder layer {index} of {type(model).__name__} has no 'self_attn' module.")
        modules.append(attn)
    return modules


def key_source_layers(model: nn.Module) -> list[int]:
    """For each text decoder layer, the layer whose keys and values it attends with.

    A layer's own index, except for a KV-shared layer (Gemma 4's ``num_kv_shared_layers``),
    which reuses the keys and values of the last earlier layer of its kind that stores them.
    """
    modules = decoder_attention_modules(model)
    sources = []
    for index, attn in enumerate(modules):
        if not getattr(attn, "is_kv_shared_layer", False):
            sources.append(index)
            continue
        owners = [
            j
            for j in range(index)
            if getattr(modules[j], "store_full_length_kv", False) and modules[j].layer_type == attn.layer_type
        ]
        if not owners:
            raise ValueError(
                f"decoder layer {index} of {type(model).__name__} reuses keys of an earlier "
                f"{attn.layer_type} layer, but no earlier layer stores them."
            )
        sources.append(owners[-1])
    return sources
