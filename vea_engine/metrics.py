"""Answer-correctness and attribution-ranking metrics, in plain Python and numpy.

Answer metrics (one prediction against the references of one question):

* :func:`exact_match` and :func:`token_f1` reproduce the ``qa-metrics`` package
  (``qa_metrics.em.em_match`` and ``qa_metrics.f1.f1_score_with_precision_recall``,
  version 0.2.42), which the VEA reference code uses for its EM / F1 numbers.
  Two properties of that package are kept on purpose, because the paper's
  numbers depend on them:

  - **EM is containment, not equality**: a prediction scores 1 when the
    normalised text of *any reference occurs inside* the normalised prediction
    (``"the answer is 4821"`` matches ``"4821"``; so does ``"14821"``).
    A reference that normalises to ``""`` (e.g. ``"the"`` or ``"!"``) matches
    every non-empty prediction; an empty prediction never matches.
  - **F1 is over word sets**, not bags: repeated words count once.

  F1 words are made as ``qa-metrics`` makes them (see :mod:`vea_engine.answer_words`):
  NLTK's Treebank word tokenisation of the normalised text, which splits
  ``cannot`` / ``gimme`` / ``gonna`` / ``gotta`` / ``lemme`` / ``wanna``
  (``"I cannot answer"`` vs ``"cannot"`` scores 2/3), re-implemented exactly
  so that it needs no package; then NLTK's WordNet lemmatisation driven by its
  POS tagger, used when NLTK, the tagger model and WordNet are installed.
  Without them F1 runs unlemmatised (one logged warning) and can differ from
  ``qa-metrics`` only on words the lemmatiser changes (``"cats"`` vs
  ``"cat"``). NLTK is imported only when F1 first looks for the lemmatiser,
  so the engine imports, and EM and F1 run, without it; EM never tokenises
  or lemmatises.
* :func:`anls` is the DocVQA / InfographicVQA convention.
* :func:`vqa_accuracy` is the TextVQA / VQAv2 convention (EvalAI answer
  processing, ``min(1, matches / 3)`` over the leave-one-out subsets).

Ranking metrics (per-sample, for layer profiling: one score and one binary
evidence label per visual token) match scikit-learn: :func:`auroc`
(``roc_auc_score``), :func:`average_precision` (``average_precision_score``)
and :func:`ndcg_all` (``ndcg_score`` with ``k=None``, ties averaged). Each
returns ``nan`` when the labels are all one class (the metric is undefined
there); profiling skips such samples.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from .answer_words import default_lemmatizer, treebank_words

__all__ = [
    "normalize_answer",
    "exact_match",
    "token_f1",
    "anls",
    "vqa_accuracy",
    "auroc",
    "average_precision",
    "ndcg_all",
]

# ---------------------------------------------------------------------------------------------
# qa-metrics normalisation
# ---------------------------------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = frozenset({"a", "an", "the"})

# qa-metrics removes articles with the third-party ``regex`` module, r"\b(a|an|the)\b".
# Its \w (hence \b) is Unicode Alphabetic + marks + decimal digits + connector
# punctuation + joiners, which differs from ``re``'s \w (e.g. on combining marks
# and on superscript digits). The predicate below is that definition; the tests
# check it against ``regex`` on every assigned code point.
_OTHER_ALPHABETIC_SYMBOLS = frozenset(
    [*range(0x24B6, 0x24EA), *range(0x1F130, 0x1F14A), *range(0x1F150, 0x1F16A), *range(0x1F170, 0x1F18A)]
)  # circled / squared Latin letters: category So, but Unicode "Alphabetic"


def _is_word_char(ch: str) -> bool:
    """True when ``regex``'s Unicode ``\\w`` matches the single character ``ch``."""
    category = unicodedata.category(ch)
    return (
        category[0] in "LM"
        or category in ("Nd", "Nl", "Pc")
        or ch in "\u200c\u200d"
        or ord(ch) in _OTHER_ALPHABETIC_SYMBOLS
    )


def _remove_articles(text: str) -> str:
    """``regex.sub(r"\\b(a|an|the)\\b", " ", text)``: each whole word a/an/the becomes a space."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if _is_word_char(text[i]):
            j = i
            while j < n and _is_word_char(text[j]):
                j += 1
            word = text[i:j]
            out.append(" " if word in _ARTICLES else word)
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _squad_normalize(text: str) -> str:
    """qa-metrics' SQuAD-style pass (``fix_answer`` / ``remove_punctuation``).

    lower -> drop ASCII punctuation -> drop articles -> collapse whitespace.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCTUATION)
    return " ".join(_remove_articles(text).split())


def normalize_answer(s: str) -> str:
    """Normalise an answer exactly like ``qa_metrics.utils.tools.normalize_answer``.

    Steps, in order: lower-case; delete every Unicode punctuation character
    (categories ``P*``, no space inserted: ``"u.s.a"`` -> ``"usa"``); collapse
    whitespace; lower-case again, delete ASCII punctuation (this also removes
    the ASCII symbols ``$+<=>^`|~``), replace the whole words ``a``/``an``/``the``
    by spaces, collapse whitespace; map ``’`` to ``'``; strip; lower-case.

    This is the text :func:`token_f1` splits into words. :func:`exact_match`
    applies one more SQuAD pass (lower, ASCII punctuation, articles,
    whitespace) on top, as ``qa_metrics.em.em_match`` does.

    Args:
        s: the answer text.

    Returns:
        The normalised string (possibly ``""``).
    """
    if not isinstance(s, str):
        raise TypeError(f"normalize_answer: expected a str, got {type(s).__name__}; convert with str() first.")
    text = s.lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    text = _squad_normalize(" ".join(text.split()))
    return text.replace("\u2019", "'").strip().lower()


def _em_normalize(s: str) -> str:
    """``remove_punctuation(normalize_answer(s))`` as in ``qa_metrics.em.em_match``."""
    return _squad_normalize(normalize_answer(s))


def _check_refs(fn: str, refs: str | Sequence[str]) -> list[str]:
    """Validate references: a non-empty sequence of str (a bare str is one reference)."""
    if isinstance(refs, str):
        return [refs]
    if isinstance(refs, np.ndarray):
        refs = refs.tolist()
    if not isinstance(refs, Sequence) or len(refs) == 0:
        raise ValueError(
            f"{fn}: refs must be a non-empty list of reference answers, got {refs!r}; "
            "skip questions without references."
        )
    bad = [i for i, r in enumerate(refs) if not isinstance(r, str)]
    if bad:
        raise TypeError(
            f"{fn}: refs[{bad[0]}] is a {type(refs[bad[0]]).__name__}, expected str; convert answers with str()."
        )
    return list(refs)


def _check_pred(fn: str, pred: str) -> str:
    if not isinstance(pred, str):
        raise TypeError(f"{fn}: pred must be a str, got {type(pred).__name__}; decode the model output first.")
    return pred


def exact_match(pred: str, refs: str | Sequence[str]) -> float:
    """qa-metrics exact match: 1.0 if a normalised reference occurs in the normalised prediction.

    Identical to ``float(qa_metrics.em.em_match(refs, pred))``: both sides go
    through :func:`normalize_answer` and one more SQuAD pass, then the score is
    1.0 when any reference string is a *substring* of the prediction (the
    package's definition; VLM answers are often longer than the reference).
    An empty ``pred`` scores 0.0.

    Args:
        pred: the model's answer.
        refs: acceptable answers (non-empty list; a bare str is one reference).

    Returns:
        0.0 or 1.0.
    """
    pred = _check_pred("exact_match", pred)
    refs = _check_refs("exact_match", refs)
    if len(pred) == 0:
        return 0.0
    candidate = _em_normalize(pred)
    return 1.0 if any(_em_normalize(ref) in candidate for ref in refs) else 0.0


def token_f1(pred: str, refs: str | Sequence[str], lemmatize: bool | Callable[[str], str] | None = True) -> float:
    """qa-metrics token F1, best over references.

    For each reference, as ``qa_metrics.f1.f1_score_with_precision_recall``:
    both texts are normalised (:func:`normalize_answer`), split into words by
    NLTK's Treebank rules (:func:`vea_engine.answer_words.treebank_words`:
    ``"cannot"`` -> ``can not``, likewise gimme, gonna, gotta, lemme, wanna),
    lemmatised (see ``lemmatize``) and made into word *sets*; with
    ``tp = |R & P|``, ``precision = tp / |R|``, ``recall = tp / |P|`` and
    ``F1 = 2 p r / (p + r)`` (0 when ``p + r = 0``, so two empty answers score 0).
    The result is the maximum over references, as the VEA reference picks the
    best-matching reference.

    Args:
        pred: the model's answer.
        refs: acceptable answers (non-empty list; a bare str is one reference).
        lemmatize: ``True`` (default): qa-metrics' lemmatiser (NLTK's POS tagger
            + WordNet lemmatiser) when NLTK, its tagger model and WordNet are
            installed (:func:`vea_engine.answer_words.load_qa_lemmatizer`);
            otherwise no lemmatisation, with one logged warning per process.
            ``False`` or ``None``: no lemmatisation. A callable ``str -> str``:
            applied to the tokenised words joined by spaces, its result split on
            whitespace (``qa_metrics.utils.tools.lemmatize_text`` fits).

    Returns:
        F1 in [0, 1].
    """
    pred = _check_pred("token_f1", pred)
    refs = _check_refs("token_f1", refs)
    if lemmatize is True:
        lemmatize = default_lemmatizer()
    elif lemmatize is False:
        lemmatize = None
    elif lemmatize is not None and not callable(lemmatize):
        raise TypeError(f"token_f1: lemmatize must be True, False, None or a callable str -> str, got {lemmatize!r}.")

    def words(text: str) -> set[str]:
        joined = " ".join(treebank_words(normalize_answer(text)))
        if lemmatize is not None:
            joined = lemmatize(joined)
            if not isinstance(joined, str):
                raise TypeError(f"token_f1: lemmatize returned a {type(joined).__name__}, expected a str.")
        return set(joined.split())

    words_pred = words(pred)
    best = 0.0
    for ref in refs:
        words_ref = words(ref)
        tp = len(words_ref & words_pred)
        fp = len(words_ref - words_pred)
        fn = len(words_pred - words_ref)
        precision = tp / (tp + fp) if (tp + fp) > 0 else 0
        recall = tp / (tp + fn) if (tp + fn) > 0 else 0
        f1 = 2 * (precision * recall) / (precision + recall) if (precision + recall) > 0 else 0
        best = max(best, float(f1))
    return best


# ---------------------------------------------------------------------------------------------
# ANLS (DocVQA / InfographicVQA)
# ---------------------------------------------------------------------------------------------


def _levenshtein(a: str, b: str) -> int:
    """Edit distance (insert / delete / substitute, unit costs) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(pred: str, refs: str | Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity of one answer (DocVQA convention).

    Both strings are lower-cased and stripped (inner whitespace is kept); the
    similarity to a reference is ``1 - lev(pred, ref) / max(len(pred), len(ref))``
    (1.0 when both are empty). The score is the best similarity over the
    references, set to 0.0 when it is below ``threshold`` (a value equal to the
    threshold is kept, as in the official evaluation script). The dataset ANLS
    is the mean of this over questions.

    Args:
        pred: the model's answer.
        refs: acceptable answers (non-empty list; a bare str is one reference).
        threshold: in [0, 1]; 0.5 is the DocVQA value.

    Returns:
        A score in {0} U [threshold, 1].
    """
    pred = _check_pred("anls", pred)
    refs = _check_refs("anls", refs)
    if not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"anls: threshold must be a number in [0, 1], got {threshold!r}; DocVQA uses 0.5.")
    p = pred.lower().strip()
    best = 0.0
    for ref in refs:
        r = ref.lower().strip()
        length = max(len(p), len(r))
        similarity = 1.0 if length == 0 else 1.0 - _levenshtein(p, r) / length
        best = max(best, similarity)
    return best if best >= threshold else 0.0


# ---------------------------------------------------------------------------------------------
# VQA accuracy (TextVQA / VQAv2, EvalAI answer processing)
# ---------------------------------------------------------------------------------------------

_VQA_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_VQA_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_VQA_PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip
# "(?!<=\d)" is a lookahead in the official code (a typo for a lookbehind); kept verbatim.
_VQA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_VQA_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
# The official code calls PERIOD_STRIP.sub("", text, re.UNICODE): re.UNICODE (32) lands in
# the ``count`` argument, so at most 32 periods are removed. Reproduced.
_VQA_PERIOD_COUNT = int(re.UNICODE)


def _vqa_normalize(text: str) -> str:
    """EvalAI answer processing (TextVQA / VQAv2 official evaluation).

    lower; drop ``,`` and ``?``; ``'s`` -> `` 's``; tabs/newlines to spaces;
    punctuation deleted (or replaced by a space when it is not next to a space
    and the text has no digit-comma-digit); periods not followed by a digit
    deleted; number words -> digits; articles dropped; contractions restored.
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    has_digit_comma = _VQA_COMMA_STRIP.search(text) is not None
    for p in _VQA_PUNCTUATION:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _VQA_PERIOD_STRIP.sub("", out, _VQA_PERIOD_COUNT)
    words = [_VQA_NUMBERS.get(w, w) for w in out.lower().split()]
    words = [_VQA_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def vqa_accuracy(pred: str, refs: Sequence[str]) -> float:
    """TextVQA / VQAv2 soft accuracy of one answer.

    Prediction and the human answers are normalised with the EvalAI processor
    (punctuation, number words -> digits, articles, contractions), always, as
    the TextVQA evaluator (``TextVQAAccuracyEvaluator``) does. (The older VQAv2
    ``vqaEval.py`` normalises only when the humans disagree; the two differ
    only when all references are identical and the prediction equals them up
    to normalisation.) For each of
    the ``n`` leave-one-out subsets of the references the accuracy is
    ``min(1, #matches / 3)``; the score is their mean. With the usual 10 answers:
    1 match -> 0.3, 2 -> 0.6, 3 -> 0.9, >= 4 -> 1.0.

    Args:
        pred: the model's answer.
        refs: the question's full list of human answers (10 for TextVQA / VQAv2,
            duplicates included; at least 2).

    Returns:
        Accuracy in [0, 1].
    """
    pred = _check_pred("vqa_accuracy", pred)
    refs = _check_refs("vqa_accuracy", refs)
    if len(refs) < 2:
        raise ValueError(
            f"vqa_accuracy: needs the full list of human answers (10 for TextVQA/VQAv2), got {len(refs)}; "
            "leave-one-out accuracy of a single reference is always 0 -- use exact_match or anls instead."
        )
    answer = _vqa_normalize(pred)
    matches = [_vqa_normalize(r) == answer for r in refs]
    total = sum(matches)
    accs = [min(1.0, (total - m) / 3.0) for m in matches]  # leave reference i out
    return float(sum(accs) / len(accs))


# ---------------------------------------------------------------------------------------------
# Ranking metrics (per-sample, layer profiling)
# ---------------------------------------------------------------------------------------------


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
