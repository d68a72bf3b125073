"""Every transformers internal the engine relies on, in one place.

Capture switches a decoder's attention kernel inside a scope. transformers has no
public API for "run this config on another registered kernel and switch back", so
three private details are used; each is reached only through this module, and
``tests/test_compat.py`` checks them against the installed transformers:

* ``config._attn_implementation_internal`` -- the field behind the public
  ``config._attn_implementation`` property; writing it switches the kernel
  without re-validating the model (``set_attn_implementation`` would);
* ``AttentionInterface._global_mapping`` / ``ALL_MASK_ATTENTION_FUNCTIONS._global_mapping``
  -- the registries, read to know whether a name is registered and which mask
  function a base kernel uses;
* ``<modeling module>.eager_attention_forward`` -- each model's own eager kernel
  (``"eager"`` is not in the registry).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from torch import nn

#: The transformers major version these internals were checked against.
TRANSFORMERS_MAJOR = 5


def get_attn_implementation(config: Any) -> str | None:
    """The attention kernel name a config selects (``"sdpa"``, ``"eager"``, ...)."""
    return getattr(config, "_attn_implementation", None)


def set_attn_implementation(config: Any, name: str | None) -> None:
    """Point ``config`` at kernel ``name`` (a registered name), without re-validating the model."""
    config._attn_implementation_internal = name


def raw_attn_implementation(config: Any) -> str | None:
    """What :func:`set_attn_implementation` wrote last (to restore it exactly)."""
    return config._attn_implementation_internal


def attention_function(name: str, module: nn.Module) -> Callable[..., Any]:
    """The attention function ``name`` resolves to for ``module`` (its own eager kernel for ``"eager"``)."""
    if name == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[name]


def mask_kernels() -> dict[str, Callable[..., Any]]:
    """Registered mask functions by kernel name (the kernels capture can wrap)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    return dict(ALL_MASK_ATTENTION_FUNCTIONS._global_mapping)


def is_registered(name: str) -> bool:
    """Whether an attention kernel of that name is registered."""
    from transformers import AttentionInterface

    return name in AttentionInterface._global_mapping


def register_kernel(name: str, function: Callable[..., Any], like: str) -> None:
    """Register ``function`` as attention kernel ``name``, masked as kernel ``like`` is."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, mask_kernels()[like])
