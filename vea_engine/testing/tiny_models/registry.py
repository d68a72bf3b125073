"""The family -> :class:`~.spec.FamilyBuilder` table, and the lookups every entry point shares.

It mirrors ``vea_engine/families`` (one adapter per family there, one builder module per
family here). Everything per family is read from the builders: the default image sizes
(:data:`IMAGE_SIZES`), which overrides apply to which families, extra processor
requirements (:data:`FAMILY_REQUIREMENTS`) and the test expectations.

Adding a family = one module in this package defining its :class:`~.spec.FamilyBuilder`,
plus one line in :data:`_BUILDERS`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from . import (
    gemma3,
    gemma4,
    glm4v,
    idefics3,
    internvl,
    lfm2_vl,
    llama4,
    llava,
    llava_next,
    llava_onevision,
    mistral3,
    paligemma,
    qwen3_5,
    qwen3_vl,
    qwen_vl,
)
from .spec import FamilyBuilder, FamilyExpectations, TinySpec, resolve_spec

__all__ = [
    "FAMILIES",
    "FAMILY_REQUIREMENTS",
    "IMAGE_SIZES",
    "available_families",
    "expectations",
    "family_builder",
    "missing_requirements",
    "require",
    "spec_for",
]

_BUILDERS: dict[str, FamilyBuilder] = {
    "qwen2_vl": qwen_vl.QWEN2_VL,
    "qwen2_5_vl": qwen_vl.QWEN2_5_VL,
    "llava": llava.LLAVA,
    "gemma3": gemma3.GEMMA3,
    "llava_next": llava_next.LLAVA_NEXT,
    "qwen3_vl": qwen3_vl.QWEN3_VL,
    "llava_onevision": llava_onevision.LLAVA_ONEVISION,
    "idefics3": idefics3.IDEFICS3,
    "smolvlm": idefics3.SMOLVLM,
    "internvl": internvl.INTERNVL,
    "paligemma": paligemma.PALIGEMMA,
    "llama4": llama4.LLAMA4,
    "glm4v": glm4v.GLM4V,
    "glm4v_moe": glm4v.GLM4V_MOE,
    "glm46v": glm4v.GLM46V,
    "mistral3": mistral3.MISTRAL3,
    "qwen3_5": qwen3_5.QWEN3_5,
    "qwen3_5_moe": qwen3_5.QWEN3_5_MOE,
    "gemma4": gemma4.GEMMA4,
    "lfm2_vl": lfm2_vl.LFM2_VL,
}

#: Families a tiny checkpoint can be built for.
FAMILIES: tuple[str, ...] = tuple(_BUILDERS)

#: Default ``image_size`` of the families that have one (see :class:`~.spec.TinySpec`).
IMAGE_SIZES: dict[str, int] = {f: b.image_size for f, b in _BUILDERS.items() if b.image_size is not None}

#: Python packages a family's transformers processor needs beyond this project's dependencies.
FAMILY_REQUIREMENTS: dict[str, tuple[str, ...]] = {f: b.requirements for f, b in _BUILDERS.items() if b.requirements}

#: Spec fields that only mean something for some families (overriding them elsewhere is an error):
#: the pixel budget for the families sized by it (Qwen), ``image_size`` for the others.
_FAMILY_ONLY_FIELDS: dict[str, tuple[str, ...]] = {
    "min_pixels": tuple(f for f, b in _BUILDERS.items() if b.image_size is None),
    "max_pixels": tuple(f for f, b in _BUILDERS.items() if b.image_size is None),
    "image_size": tuple(IMAGE_SIZES),
}


def family_builder(family: str) -> FamilyBuilder:
    """The :class:`~.spec.FamilyBuilder` of ``family``; ValueError listing :data:`FAMILIES` otherwise."""
    try:
        return _BUILDERS[family]
    except (KeyError, TypeError):
        raise ValueError(f"unknown tiny model family {family!r}; known families: {', '.join(FAMILIES)}.") from None


def expectations(family: str) -> FamilyExpectations:
    """The hand-written :class:`~.spec.FamilyExpectations` of ``family``'s checkpoint."""
    return family_builder(family).expected


def spec_for(family: str, overrides: Mapping[str, Any]) -> TinySpec:
    """The validated :class:`~.spec.TinySpec` of ``family`` with ``overrides`` applied.

    Raises:
        ValueError: unknown family, unknown override, an override that does not apply to
            ``family``, or inconsistent sizes.
    """
    builder = family_builder(family)
    return resolve_spec(family, builder, overrides, _FAMILY_ONLY_FIELDS)


def missing_requirements(family: str) -> tuple[str, ...]:
    """The packages of :data:`FAMILY_REQUIREMENTS` that ``family`` needs and that are not installed."""
    family_builder(family)
    return tuple(name for name in FAMILY_REQUIREMENTS.get(family, ()) if importlib.util.find_spec(name) is None)


def available_families() -> tuple[str, ...]:
    """The :data:`FAMILIES` whose processor requirements are installed (all but, e.g., SmolVLM without num2words)."""
    return tuple(family for family in FAMILIES if not missing_requirements(family))


def require(family: str) -> None:
    """Raise ImportError naming the ``pip install`` when ``family``'s processor requirements are missing."""
    missing = missing_requirements(family)
    if missing:
        raise ImportError(
            f"tiny {family}: transformers' {family} processor needs {', '.join(missing)}; "
            f"install it with `pip install {' '.join(missing)}`."
        )
