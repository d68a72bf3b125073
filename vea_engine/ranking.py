"""Ranking metrics of one sample for layer profiling: does a score rank the evidence tokens first?

One score and one binary evidence label per visual token. The metrics match
scikit-learn: :func:`auroc` (``roc_auc_score``), :func:`average_precision`
(``average_precision_score``) and :func:`ndcg_all` (``ndcg_score`` with
``k=None``, ties averaged). Each returns ``nan`` when the labels are all one
class (the metric is undefined there); profiling skips such samples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "average_precision", "ndcg_all"]


def _check_ranking(fn: str, scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``scores`` / ``labels`` -> (float64 [N], bool [N])."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"{fn}: scores and labels must be 1-D (one entry per visual token), got shapes {s.shape} and {y.shape}; "
            "flatten the token grid with .ravel() first."
        )
    if s.shape != y.shape:
        raise ValueError(f"{fn}: scores has {s.shape[0]} entries but labels has {y.shape[0]}; they must match.")
    if s.size == 0:
        raise ValueError(f"{fn}: got empty scores and labels; pass at least one token.")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{fn}: scores contain NaN or inf at index {int(np.flatnonzero(~np.isfinite(s))[0])}.")
    if y.dtype != np.bool_:
        if not np.issubdtype(y.dtype, np.number) or not np.all((y == 0) | (y == 1)):
            raise ValueError(
                f"{fn}: labels must be binary (bool or 0/1), got values {np.unique(y)[:5].tolist()}; "
                "threshold relevance to evidence / non-evidence first."
            )
        y = y == 1
    return s, y


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` ([N] float64), ties sharing their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` (sklearn ``roc_auc_score``).

    Computed as the Mann-Whitney statistic with average ranks, so tied scores
    count one half, exactly as the trapezoidal ROC area does.

    Args:
        scores: ``[N]`` real scores (higher = more likely evidence).
        labels: ``[N]`` binary (bool or 0/1), True = evidence token.

    Returns:
        AUROC in [0, 1]; ``nan`` when ``labels`` are all one class.
    """
    s, y = _check_ranking("auroc", scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = float(_average_ranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision(scores, labels) -> float:
    """Average precision (sklearn ``average_precision_score``).

    ``AP = sum_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds
    ``t`` in decreasing order (tied scores enter together; no interpolation).

    Args:
        scores: ``[N]`` real scores (higher = more likely evidence).
        labels: ``[N]`` binary (bool or 0/1), True = evidence token.

    Returns:
        AP in [0, 1]; ``nan`` when ``labels`` are all one class.
    """
    s, y = _check_ranking("average_precision", scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return float("nan")
    order = np.argsort(s, kind="mergesort")[::-1]  # decreasing score
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each tie group
    tps = np.cumsum(y)[ends].astype(np.float64)
    precision = tps / (ends + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ndcg_all(scores, labels) -> float:
    """NDCG over the full ranking with binary gains (sklearn ``ndcg_score``, ``k=None``).

    ``DCG = sum_i gain_i / log2(i + 2)`` over tokens ranked by decreasing score;
    a group of tied scores gets its members' mean gain at each of its positions
    (sklearn's ``ignore_ties=False``). Normalised by the DCG of the ideal
    ranking (all evidence first).

    Args:
        scores: ``[N]`` real scores (higher = more likely evidence).
        labels: ``[N]`` binary (bool or 0/1), True = evidence token.

    Returns:
        NDCG in [0, 1]; ``nan`` when ``labels`` are all one class.
    """
    s, y = _check_ranking("ndcg_all", scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return float("nan")
    discount = 1.0 / np.log2(np.arange(y.size) + 2.0)  # [N]
    cumulative = np.cumsum(discount)
    _, inverse, counts = np.unique(-s, return_inverse=True, return_counts=True)  # groups by decreasing score
    group_gain = np.zeros(counts.size)
    np.add.at(group_gain, inverse.reshape(-1), y.astype(np.float64))
    group_gain /= counts
    group_discount = np.diff(np.r_[0.0, cumulative[np.cumsum(counts) - 1]])
    dcg = float(np.sum(group_gain * group_discount))
    ideal = float(cumulative[n_pos - 1])
    return dcg / ideal
