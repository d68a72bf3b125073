"""The offline demo: the one path from the product to the tiny random-weight test models.

``python -m vea_engine demo`` and ``make-tiny-models`` build tiny checkpoints of real
architectures (random weights: the pipeline runs, the answers mean nothing) and a
synthetic picture, so VEA can be shown end to end without a model download.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: Shown with every demo result.
RANDOM_WEIGHTS_WARNING = (
    "THE DEMO MODEL HAS RANDOM WEIGHTS: its answers and attention are meaningless. "
    "The demo only shows the pipeline running end to end; pass --model with a real checkpoint "
    "(e.g. Qwen/Qwen2.5-VL-7B-Instruct or a local folder) for real answers."
)


def build_demo_models(out: str | os.PathLike, families: Sequence[str] | None = None) -> dict[str, Path]:
    """Build (or reuse) tiny random-weight checkpoints into ``out``; ``family -> folder``."""
    from .testing.tiny_models import build_tiny_models

    return build_tiny_models(out) if families is None else build_tiny_models(out, families=tuple(families))
