"""Every value a node receives is checked at that node, against the node's own schema.

The ComfyUI versions this pack runs on do not check V3 combo values, and let NaN
through ``min``/``max``. :func:`checked` wraps a node's ``execute``: before the engine
is called, each combo value must be one of its options, each number finite and in its
range, each IMAGE/MASK finite. The error names the node, the input, the value and
the fix, once. On servers with ``io.DynamicCombo`` the wrapper first turns the nested values
into plain ones (:func:`.widgets.plain_values`), so ``execute`` and these checks see the same
arguments on every server.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from comfy_api.latest import io

from .widgets import HAS_DYNAMIC_COMBO, dynamic_specs, plain_values


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _options_text(options: list) -> str:
    shown = ", ".join(repr(o) for o in options[:8])
    return shown + (f", ... ({len(options)} in all)" if len(options) > 8 else "")


def check_value(node: str, spec: Any, value: Any) -> None:
    """Raise a ValueError when ``value`` does not fit input ``spec`` of ``node``."""
    name = spec.id
    if value is None:
        return
    if isinstance(spec, io.Combo.Input) or (HAS_DYNAMIC_COMBO and isinstance(spec, io.DynamicCombo.Input)):
        options = [getattr(o, "key", o) for o in spec.options or []]
        if options and value not in options:
            raise ValueError(f"{node}: {name} = {_short(value)} is not one of {_options_text(options)}; choose one.")
    elif isinstance(spec, (io.Float.Input, io.Int.Input)):
        low, high = getattr(spec, "min", None), getattr(spec, "max", None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(
                f"{node}: {name} = {_short(value)} is not a finite number; use a value in [{low}, {high}]."
            )
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{node}: {name} = {value} is outside [{low}, {high}]; use a value in that range.")
    elif isinstance(spec, (io.Image.Input, io.Mask.Input)) and isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"{node}: {name} contains NaN or infinite values; fix the node that made it (e.g. a NaN fill or "
                "a division by zero) before this one."
            )


def checked(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a node's ``execute`` (under ``@classmethod``) so every input is checked first.

    ``execute`` receives plain keyword arguments on every server (see :func:`.widgets.plain_values`).
    """
    names = list(inspect.signature(execute).parameters)[1:]  # after cls

    @functools.wraps(execute)
    def wrapper(cls, *args: Any, **kwargs: Any) -> Any:
        schema = cls.define_schema()
        values = plain_values(schema, {**dict(zip(names, args, strict=False)), **kwargs})
        node = schema.display_name or schema.node_id
        for spec in schema.inputs:
            if HAS_DYNAMIC_COMBO and isinstance(spec, io.DynamicCombo.Input) and spec.id not in values:
                keys = [option.key for option in spec.options]  # a server without accept_all_inputs drops them
                raise ValueError(f"{node}: {spec.id} is missing or not one of {_options_text(keys)}; choose one.")
            for each in (spec, *dynamic_specs(spec)):
                if each.id in values:
                    check_value(node, each, values[each.id])
        return execute(cls, **values)

    return wrapper


def validator(validate: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a node's ``validate_inputs`` (under ``@classmethod``) so it receives only its own arguments.

    ComfyUI 0.8+ also passes every DynamicCombo's nested value to ``validate_inputs``, asked for
    or not; taking ``**kwargs`` instead would make ComfyUI repeat a message once per input. The
    wrapper keeps the validator's signature (what ComfyUI reads to choose the inputs) and drops
    the rest.
    """
    signature = inspect.signature(validate)

    @functools.wraps(validate)
    def wrapper(cls, *args: Any, **kwargs: Any) -> Any:
        return validate(cls, *args, **{k: v for k, v in kwargs.items() if k in signature.parameters})

    wrapper.__signature__ = signature  # ComfyUI reads the arguments with getfullargspec
    return wrapper


def device_options() -> list[str]:
    """``default`` (ComfyUI's compute device), ``cpu`` and every CUDA device that exists."""
    return ["default", "cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
