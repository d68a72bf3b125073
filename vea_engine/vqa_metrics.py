"""Benchmark answer scores: ANLS (DocVQA / InfographicVQA) and VQA accuracy (TextVQA / VQAv2).

* :func:`anls` is the DocVQA / InfographicVQA convention (Average Normalised
  Levenshtein Similarity, threshold 0.5).
* :func:`vqa_accuracy` is the TextVQA / VQAv2 convention (EvalAI answer
  processing, ``min(1, matches / 3)`` over the leave-one-out subsets).

Arguments are checked as in :mod:`vea_engine.metrics` (a str prediction; a
non-empty list of str references).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .metrics import ARTICLES, check_pred, check_refs

__all__ = ["anls", "vqa_accuracy"]

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
    pred = check_pred("anls", pred)
    refs = check_refs("anls", refs)
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
    words = [_VQA_CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
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
    pred = check_pred("vqa_accuracy", pred)
    refs = check_refs("vqa_accuracy", refs)
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
