"""Answer normalisation, exact match and token F1, as the ``qa-metrics`` package computes them.

:func:`exact_match` and :func:`token_f1` reproduce ``qa-metrics``
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

The other scores live next door and are also reachable from here, so that
``vea_engine.metrics`` is the one import for every score:

* :mod:`vea_engine.vqa_metrics` -- :func:`anls` (DocVQA / InfographicVQA) and
  :func:`vqa_accuracy` (TextVQA / VQAv2, EvalAI answer processing);
* :mod:`vea_engine.ranking` -- :func:`auroc`, :func:`average_precision` and
  :func:`ndcg_all`, the per-sample ranking metrics of layer profiling
  (scikit-learn's definitions).
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from .answer_words import default_lemmatizer, treebank_words

__all__ = ["normalize_answer", "exact_match", "token_f1"]


# ---------------------------------------------------------------------------------------------
# qa-metrics normalisation
# ---------------------------------------------------------------------------------------------

_ASCII_PUNCTUATION = frozenset(string.punctuation)
#: The words dropped as articles (qa-metrics and EvalAI answer processing drop the same three).
ARTICLES = frozenset({"a", "an", "the"})

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
            out.append(" " if word in ARTICLES else word)
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


def check_refs(fn: str, refs: str | Sequence[str]) -> list[str]:
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


def check_pred(fn: str, pred: str) -> str:
    """Validate a prediction: a str (a model output not yet decoded is an error)."""
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
    pred = check_pred("exact_match", pred)
    refs = check_refs("exact_match", refs)
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
    pred = check_pred("token_f1", pred)
    refs = check_refs("token_f1", refs)
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
