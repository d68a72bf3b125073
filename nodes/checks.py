"""Every value a node receives is checked at that node, against the node's own schema.

The ComfyUI versions this pack runs on do not check V3 combo values, and let NaN
through ``min``/``max``. :func:`checked` wraps a node's ``execute``: before the engine
is called, each combo value must be one of its options, each number finite and in its
range, each IMAGE/MASK finite. The error names the node, the input, the value and
the fix, once.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from comfy_api.latest import io


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
    if isinstance(spec, io.Combo.Input):
        options = list(spec.options or [])
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
    """Decorate a node's ``execute`` (under ``@classmethod``) so every input is checked first."""
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def wrapper(cls, *args: Any, **kwargs: Any) -> Any:
        schema = cls.define_schema()
        bound = signature.bind(cls, *args, **kwargs)
        for spec in schema.inputs:
            if spec.id in bound.arguments:
                check_value(schema.display_name or schema.node_id, spec, bound.arguments[spec.id])
        return execute(cls, *args, **kwargs)

    return wrapper


def device_options() -> list[str]:
    """``default`` (ComfyUI's compute device), ``cpu`` and every CUDA device that exists."""
    return ["default", "cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
