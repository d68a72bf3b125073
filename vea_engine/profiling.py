"""Layer profiling (paper step 1): which decoder layers look at the evidence.

For each sample with ground-truth evidence boxes, one forward pass on the plain
``qa`` prompt records the head-mean attention row of the last prompt token at
*every* softmax-attention decoder layer (captured inside SDPA / flash attention, see
:mod:`vea_engine.capture`; no eager ``[B, H, N, N]`` maps). Restricted to the
image tokens, each layer's row ranks the tokens; the ranking is scored against
per-token evidence labels (:func:`vea_engine.labels.evidence_labels`) by AUROC, average precision
and NDCG@all. Per-layer scores are averaged over samples (samples whose labels
are all one class are skipped and counted) and the top
``max(1, ceil(top_fraction * n_layers))`` layers by mean AUROC are kept (the
reference's rule: on equal AUROC the higher layer index wins, see
:func:`select_top_layers`). On a hybrid decoder (Qwen3.5) only the softmax-attention
layers are scored and ranked (``n_layers`` counts them); the other layers have no
attention row and keep ``nan`` scores.

The result, :class:`LayerProfile`, is saved as JSON, reloaded, turned into a
:class:`~vea_engine.layers.LayerSelection` for attribution, and drawn with
:func:`vea_engine.profile_plot.plot_profile`.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DEFAULTS
from .geometry import ImageGeometry
from .inputs import Progress
from .labels import LABEL_RULES, evidence_labels
from .layers import LayerSelection

log = logging.getLogger(__name__)

#: ``format`` tag written into profile JSON files.
PROFILE_FORMAT = "vea-layer-profile/1"


# ---------------------------------------------------------------------------------------------
# Profile result
# ---------------------------------------------------------------------------------------------


def n_top_layers(num_layers: int, top_fraction: float = DEFAULTS.top_layer_fraction) -> int:
    """``max(1, ceil(top_fraction * num_layers))``, immune to float round-off (0.1 * 30 -> 3, not 4)."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r} (the paper keeps 0.10 of the layers).")
    return max(1, math.ceil(round(top_fraction * num_layers, 9)))


def select_top_layers(auroc: Sequence[float], n_keep: int) -> tuple[int, ...]:
    """The ``n_keep`` layers with the highest AUROC, as the reference selects them.

    The reference sorts the layers ascending by mean AUROC and keeps the last
    ``n_keep`` (``argsort(auroc)[-n_keep:]``), then sorts those indices. With a stable
    ascending sort, layers of equal AUROC keep index order, so on a tie the *higher*
    layer index is kept: ``[0.5, 0.9, 0.9, 0.7]`` with ``n_keep=1`` gives ``(2,)``.
    (The reference calls numpy's default ``argsort``, which is not stable: with SIMD
    sorting, e.g. numpy 2.x on an AVX2 CPU, ties can come out in any order even for a
    few layers, so its tie-breaking depends on the machine. We always apply the stable
    rule.)

    ``nan`` (a layer no sample scored) ranks *below* every scored layer; among ``nan``
    layers the higher index again wins. This deliberately differs from plain
    ``np.argsort``, which sorts ``nan`` last and would therefore keep unscored layers
    first. In both implementations a ``nan`` mean cannot come out of profiling (samples
    whose labels are all one class are skipped; non-finite attention is an error), so
    real selections are the same.

    Args:
        auroc: ``[L]`` mean AUROC per layer.
        n_keep: how many layers to keep, ``1 <= n_keep <= L``.

    Returns:
        The kept layer indices, sorted ascending.
    """
    values = np.asarray(auroc, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"select_top_layers: expected one AUROC per layer (1-D, non-empty), got shape {values.shape}.")
    if not 1 <= n_keep <= values.size:
        raise ValueError(f"select_top_layers: n_keep must be in 1..{values.size}, got {n_keep}.")
    order = np.argsort(np.where(np.isnan(values), -np.inf, values), kind="stable")  # ascending, ties in index order
    return tuple(sorted(int(v) for v in order[-n_keep:]))


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer evidence-localisation scores of one model, and the layers kept.

    Attributes:
        model_name: the checkpoint profiled (path or hub id).
        num_layers: decoder depth ``L``.
        layers: selected layers (0-based, sorted): the top ``n_top_layers(L, top_fraction)``
            by mean AUROC (:func:`select_top_layers`: ties go to the higher layer).
        auroc: ``L`` mean AUROC per layer (``nan`` where no sample scored it, and at layers
            without softmax attention).
        ap: ``L`` mean average precision per layer.
        ndcg: ``L`` mean NDCG@all per layer.
        n_samples: samples that contributed (labels with both classes).
        n_skipped: samples skipped because every token had the same label.
        rule: evidence label rule (``any`` / ``half`` / ``all``).
        top_fraction: fraction of layers kept.
        path: file it was loaded from (not saved, not compared).
    """

    model_name: str
    num_layers: int
    layers: tuple[int, ...]
    auroc: tuple[float, ...]
    ap: tuple[float, ...]
    ndcg: tuple[float, ...]
    n_samples: int
    n_skipped: int
    rule: str = "any"
    top_fraction: float = DEFAULTS.top_layer_fraction
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("auroc", "ap", "ndcg"):
            if len(getattr(self, name)) != self.num_layers:
                raise ValueError(
                    f"layer profile: {name} has {len(getattr(self, name))} values for {self.num_layers} layers."
                )
        bad = [layer for layer in self.layers if not 0 <= layer < self.num_layers]
        if not self.layers or bad:
            raise ValueError(
                f"layer profile: selected layers {list(self.layers)} are invalid for {self.num_layers} layers."
            )
        if self.rule not in LABEL_RULES:
            raise ValueError(f"layer profile: rule must be one of {LABEL_RULES}, got {self.rule!r}.")

    def selection(self, source: str | None = None) -> LayerSelection:
        """The selected layers as a :class:`LayerSelection` (``source = profile:<file or model>``)."""
        where = source or self.path or self.model_name
        return LayerSelection(self.layers, f"profile:{where}", self.num_layers, self.auroc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``nan`` -> ``null``)."""

        def clean(values):
            return [None if not math.isfinite(v) else float(v) for v in values]

        return {
            "format": PROFILE_FORMAT,
            "model": self.model_name,
            "num_layers": self.num_layers,
            "layers": list(self.layers),
            "rule": self.rule,
            "top_fraction": self.top_fraction,
            "n_samples": self.n_samples,
            "n_skipped": self.n_skipped,
            "auroc": clean(self.auroc),
            "ap": clean(self.ap),
            "ndcg": clean(self.ndcg),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the profile as JSON (parent folders are created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> LayerProfile:
        """Read a profile written by :meth:`to_json`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"layer profile: {path} does not exist; write one with 'python -m vea_engine profile'.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"layer profile: {path} is not valid JSON ({error}).") from error
        found = data.get("format") if isinstance(data, dict) else None
        if found != PROFILE_FORMAT:
            raise ValueError(
                f"layer profile: {path} is not a {PROFILE_FORMAT!r} file (format={found!r}); "
                "write one with 'python -m vea_engine profile'."
            )
        required = ("model", "num_layers", "layers", "auroc", "ap", "ndcg", "n_samples", "n_skipped")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"layer profile: {path} lacks {missing}; re-run profiling.")

        def floats(values):
            return tuple(float("nan") if v is None else float(v) for v in values)

        return cls(
            model_name=str(data["model"]),
            num_layers=int(data["num_layers"]),
            layers=tuple(int(v) for v in data["layers"]),
            auroc=floats(data["auroc"]),
            ap=floats(data["ap"]),
            ndcg=floats(data["ndcg"]),
            n_samples=int(data["n_samples"]),
            n_skipped=int(data["n_skipped"]),
            rule=str(data.get("rule", "any")),
            top_fraction=float(data.get("top_fraction", DEFAULTS.top_layer_fraction)),
            path=str(path),
        )


# ---------------------------------------------------------------------------------------------
# Profiling
# ---------------------------------------------------------------------------------------------


@torch.inference_mode()
def layer_token_scores(vlm: Any, image: Any, question: str) -> tuple[torch.Tensor, ImageGeometry]:
    """Last-prompt-token attention over this image's tokens at every softmax-attention decoder layer.

    One forward pass on the ``qa`` prompt (batch of one), all of ``vlm.layer_kinds.attention``
    captured (every layer of a plain decoder).

    Args:
        vlm: a loaded :class:`~vea_engine.loading.VLM`.
        image: one image (PIL, array, path, ``[H, W, C]`` tensor).
        question: its question.

    Returns:
        ``(scores [A, n_tokens] float32 CPU, geometry)``; row ``i`` is the head-mean
        attention of layer ``vlm.layer_kinds.attention[i]`` (of layer ``i`` on a plain decoder).
    """
    from .attribution import layer_scores

    attention = vlm.layer_kinds.attention
    scores, geometry, _, _ = layer_scores(vlm, [image], question, attention, "qa", early_exit=False)
    return scores[:, 0], geometry  # [A, n_tokens]


def _sample_fields(sample: Any, index: int) -> tuple[str, Any, str, Any]:
    """``(id, image, question, boxes)`` of a manifest :class:`~vea_engine.data.Sample` (or alike)."""
    try:
        return str(getattr(sample, "id", index)), sample.image, sample.question, sample.boxes
    except AttributeError as error:
        raise ValueError(
            f"profile: sample {index} ({type(sample).__name__}) lacks image/question/boxes; pass "
            "vea_engine.data.Sample rows from load_manifest(path, require_boxes=True)."
        ) from error


def profile_layers(
    vlm: Any,
    samples: Sequence[Any],
    rule: str = "any",
    top_fraction: float = DEFAULTS.top_layer_fraction,
    progress: Progress | None = None,
) -> LayerProfile:
    """Score every decoder layer's evidence localisation and keep the best (paper step 1).

    Args:
        vlm: a loaded :class:`~vea_engine.loading.VLM`.
        samples: rows with ``id``, ``image`` (path or image), ``question`` and ``boxes``
            (``[m, 4]`` xyxy, original-image pixels, ``m >= 1``), e.g. from
            ``load_manifest(path, require_boxes=True)``. The paper uses ~100.
        rule: evidence label rule of :func:`vea_engine.labels.evidence_labels`.
        top_fraction: fraction of layers kept (paper 0.10; at least one layer).
        progress: ``progress(done, total)`` after each sample; may raise to cancel.

    Returns:
        :class:`LayerProfile`.
    """
    from .ranking import auroc, average_precision, ndcg_all

    if rule not in LABEL_RULES:
        raise ValueError(f"profile: rule must be one of {LABEL_RULES}, got {rule!r}.")
    attention = vlm.layer_kinds.attention  # the layers scored and ranked: softmax attention only
    n_keep = n_top_layers(len(attention), top_fraction)
    samples = list(samples)
    if not samples:
        raise ValueError("profile: no samples given; pass a manifest with evidence boxes (the paper uses ~100).")
    fields = [_sample_fields(sample, i) for i, sample in enumerate(samples)]
    boxless = [sid for sid, _, _, boxes in fields if not len(boxes)]
    if boxless:
        raise ValueError(
            f"profile: {len(boxless)} sample(s) have no evidence boxes (first: {boxless[0]!r}); profiling needs "
            "boxes -- load the manifest with require_boxes=True or add 'boxes' to those rows."
        )
    per_sample: list[np.ndarray] = []  # each [3, A]: auroc, ap, ndcg of the attention layers
    skipped = 0
    for done, (sid, image, question, boxes) in enumerate(fields, start=1):
        scores, geometry = layer_token_scores(vlm, image, question)  # [A, n_tokens]
        labels = evidence_labels(geometry, boxes, rule).numpy()  # [n_tokens]
        if labels.all() or not labels.any():
            skipped += 1
            log.info(
                "profile: sample %s skipped: all %d tokens are %s under rule %r",
                sid,
                labels.size,
                "evidence" if labels.all() else "non-evidence",
                rule,
            )
        else:
            values = scores.double().numpy()
            per_sample.append(
                np.array(
                    [
                        [auroc(row, labels) for row in values],
                        [average_precision(row, labels) for row in values],
                        [ndcg_all(row, labels) for row in values],
                    ]
                )
            )
        if progress is not None:
            progress(done, len(fields))
    if not per_sample:
        raise ValueError(
            f"profile: all {skipped} samples were skipped (every token had the same label under rule {rule!r}); "
            "check the boxes (original-image pixels, xyxy) or use rule 'any'."
        )
    stacked = np.stack(per_sample)  # [S, 3, A]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer never scored -> nan, reported as such
        scored = np.nanmean(stacked, axis=0)  # [3, A]
    means = np.full((3, vlm.num_layers), np.nan)  # [3, L]: nan at layers without softmax attention
    means[:, list(attention)] = scored
    layers = tuple(attention[i] for i in select_top_layers(scored[0], n_keep))  # ranked among attention layers
    profile = LayerProfile(
        model_name=str(vlm.name),
        num_layers=int(vlm.num_layers),
        layers=layers,
        auroc=tuple(float(v) for v in means[0]),
        ap=tuple(float(v) for v in means[1]),
        ndcg=tuple(float(v) for v in means[2]),
        n_samples=len(per_sample),
        n_skipped=skipped,
        rule=rule,
        top_fraction=float(top_fraction),
    )
    log.info(
        "profile %s: layers %s (AUROC %s) from %d samples, %d skipped",
        vlm.name,
        list(layers),
        [round(profile.auroc[layer], 3) for layer in layers],
        len(per_sample),
        skipped,
    )
    return profile
