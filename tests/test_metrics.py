"""Metrics against their reference implementations (qa-metrics, scikit-learn) and hand-computed cases.

``qa-metrics`` and ``scikit-learn`` are declared test dependencies: when one is
missing, the parity tests fail (they never skip).
"""

from __future__ import annotations

import importlib
import math
import random
import sys
import unicodedata

import numpy as np
import pytest

from vea_engine import metrics as M


def _require(module: str):
    """Import a reference implementation or fail loudly (it is a declared test dependency)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - only when the test environment is incomplete
        pytest.fail(
            f"reference package for the parity tests is missing ({module}: {exc}); "
            "install the test dependencies (qa-metrics, scikit-learn, nltk, regex) into the venv.",
            pytrace=False,
        )


# ---- a corpus of tricky answer strings ----------------------------------------------------------
PIECES = [
    "the", "The", "THE", "a", "A", "an", "An", "cat", "Cat's", "cats", "dog", "4821", "CODE:", "code",
    "u.s.a.", "U.S.", "don't", "isn't", "it’s", "café", "naïve", "résumé", "e\u0301", "the\u0301", "thé",
    "ß", "İstanbul", "ǅ", "Ａ", "ａ", "½", "x²", "²", "Ⅷ", "Ⓐ", "ⓐ", "🅰", "_", "a_b", "_the_", "—", "–",
    "…", "“quoted”", "‘single’", "’", "«fr»", "¿qué?", "$5", "5%", "1,000", "3.14", "#1", "@home", "c++",
    "<b>", "x=y", "a|b", "~", "^", "`", "😀", "中文", "日本語", "한국어", "العربية", "Ελληνικά", "\u200d",
    "a\u200d", "\u200b", "an.", "-the-", "(a)", "[an]", "{the}", "A.", "an-", "The-end", "0", "zero",
    "", " ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\u2028",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", "", "  ", "\t", ",", ".", "-", "/", "\u00a0", "\n"]


def _random_text(rng: random.Random, max_pieces: int = 6) -> str:
    parts = []
    for _ in range(rng.randint(0, max_pieces)):
        parts.append(rng.choice(PIECES))
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts)


def _corpus(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """(prediction, references) pairs; about half built so that a reference is contained."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        refs = [_random_text(rng, 3) for _ in range(rng.randint(1, 3))]
        style = rng.random()
        if style < 0.35:
            ref = rng.choice(refs)
            noisy = "".join(c.upper() if rng.random() < 0.3 else c for c in ref)
            pred = _random_text(rng, 2) + rng.choice(SEPARATORS) + noisy + rng.choice(SEPARATORS) + _random_text(rng, 2)
        elif style < 0.5:
            pred = rng.choice(refs)
        else:
            pred = _random_text(rng)
        cases.append((pred, refs))
    return cases


CORPUS = _corpus(3000, seed=20251017)


# ---- qa-metrics normalisation and EM -----------------------------------------------------------
def test_word_char_matches_regex_module_on_every_assigned_code_point():
    regex = _require("regex")
    word = regex.compile(r"\w")
    mismatches = [
        hex(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co")
        and bool(word.match(chr(cp))) != M._is_word_char(chr(cp))
    ]
    assert mismatches == []


def test_article_removal_matches_regex_module():
    regex = _require("regex")
    rng = random.Random(3)
    alphabet = ["a", "an", "the", " ", "x", "\u0301", "²", "½", "Ⓐ", "_", "\u200d", "\u200b", ".", "中", "1", "Ⅷ"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert M._remove_articles(text) == regex.sub(r"\b(a|an|the)\b", " ", text), repr(text)


def test_normalize_answer_equals_qa_metrics_on_corpus():
    tools = _require("qa_metrics.utils.tools")
    strings = [s for pred, refs in CORPUS for s in (pred, *refs)] + PIECES
    for s in strings:
        assert M.normalize_answer(s) == tools.normalize_answer(s), repr(s)
        assert M._em_normalize(s) == tools.remove_punctuation(tools.normalize_answer(s)), repr(s)


def test_exact_match_equals_qa_metrics_on_corpus():
    em = _require("qa_metrics.em")
    hits = 0
    for pred, refs in CORPUS:
        expected = float(em.em_match(refs, pred))
        assert M.exact_match(pred, refs) == expected, (pred, refs)
        hits += expected == 1.0
    assert 300 < hits < len(CORPUS) - 300  # the corpus exercises both outcomes


@pytest.mark.parametrize(
    "pred, refs, expected",
    [
        ("4821", ["4821"], 1.0),
        ("The code is 4821.", ["4821"], 1.0),  # containment, as qa-metrics
        ("14821", ["4821"], 1.0),  # containment is on characters, not words
        ("4 8 2 1", ["4821"], 0.0),
        ("U.S.A.", ["usa"], 1.0),  # punctuation deleted without a space
        ("The Beatles", ["beatles"], 1.0),
        ("", ["4821"], 0.0),  # an empty prediction never matches
        ("anything", ["the"], 1.0),  # a reference normalising to "" matches everything (qa-metrics)
        ("café", ["cafe"], 0.0),  # accents are kept
        ("cat", "cat", 1.0),  # a bare string is one reference
    ],
)
def test_exact_match_hand_cases(pred, refs, expected):
    assert M.exact_match(pred, refs) == expected


# ---- token F1 ----------------------------------------------------------------------------------
def _qa_best_f1(f1_module, pred: str, refs: list[str]) -> float:
    return max(f1_module.f1_score_with_precision_recall(ref, pred)["f1"] for ref in refs)


def test_token_f1_equals_qa_metrics_with_identity_lemmatizer(monkeypatch):
    f1_module = _require("qa_metrics.f1")
    monkeypatch.setattr(f1_module, "lemmatize_text", lambda text: text)
    nonzero = 0
    for pred, refs in CORPUS:
        expected = _qa_best_f1(f1_module, pred, refs)
        assert abs(M.token_f1(pred, refs) - expected) <= 1e-9, (pred, refs)
        nonzero += 0 < expected < 1
    assert nonzero > 200


def test_token_f1_lemmatize_hook_sits_where_qa_metrics_lemmatizes(monkeypatch):
    f1_module = _require("qa_metrics.f1")

    def toy_lemmatizer(text: str) -> str:  # deterministic stand-in for NLTK: strip a plural "s"
        return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in text.split(" "))

    monkeypatch.setattr(f1_module, "lemmatize_text", toy_lemmatizer)
    for pred, refs in CORPUS[:1000]:
        assert abs(M.token_f1(pred, refs, lemmatize=toy_lemmatizer) - _qa_best_f1(f1_module, pred, refs)) <= 1e-9
    assert M.token_f1("three cats", ["cat"], lemmatize=toy_lemmatizer) == pytest.approx(2 / 3)
    assert M.token_f1("three cats", ["cat"]) == 0.0


def test_token_f1_equals_qa_metrics_with_real_nltk_lemmatizer():
    f1_module = _require("qa_metrics.f1")
    tools = _require("qa_metrics.utils.tools")
    try:
        tools.lemmatize_text("cats running")
    except LookupError:
        pytest.skip("NLTK data (punkt_tab, averaged_perceptron_tagger_eng, wordnet) is not installed; "
                    "qa-metrics downloads it from the internet, which this machine cannot reach")  # fmt: skip
    for pred, refs in CORPUS[:300]:
        expected = _qa_best_f1(f1_module, pred, refs)
        assert abs(M.token_f1(pred, refs, lemmatize=tools.lemmatize_text) - expected) <= 1e-9


@pytest.mark.parametrize(
    "pred, refs, expected",
    [
        ("the cat sat", ["a cat sat down"], 0.8),  # {cat, sat} vs {cat, sat, down}: p=1, r=2/3
        ("cat cat cat", ["cat"], 1.0),  # word sets, not bags
        ("red", ["blue", "red car", "red"], 1.0),  # best over references
        ("", [""], 0.0),  # two empty answers score 0 (qa-metrics)
        ("nothing", ["shared"], 0.0),
    ],
)
def test_token_f1_hand_cases(pred, refs, expected):
    assert M.token_f1(pred, refs) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fn", [M.exact_match, M.token_f1, M.anls, M.vqa_accuracy])
def test_answer_metrics_validate_inputs(fn):
    with pytest.raises(ValueError, match="non-empty list"):
        fn("x", [])
    with pytest.raises(TypeError, match="refs\\[1\\]"):
        fn("x", ["a", 3])
    with pytest.raises(TypeError, match="pred must be a str"):
        fn(None, ["a", "b"])


# ---- ANLS --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pred, refs, expected",
    [
        ("hello", ["hallo"], 0.8),  # 1 substitution / 5
        ("  HeLLo ", ["hello"], 1.0),  # lower-cased and stripped
        ("kitten", ["sitting", "kitte"], 5 / 6),  # best over refs: 1 - 3/7 vs 1 - 1/6
        ("abcd", ["abxy"], 0.5),  # equal to the threshold: kept
        ("abcde", ["abxyz"], 0.0),  # 0.4 < 0.5 -> 0
        ("a b", ["a  b"], 0.75),  # inner whitespace is not collapsed: one insertion / 4
        ("", [""], 1.0),
        ("", ["abc"], 0.0),
    ],
)
def test_anls_hand_cases(pred, refs, expected):
    assert M.anls(pred, refs) == pytest.approx(expected, abs=1e-12)


def test_anls_threshold():
    assert M.anls("abcde", ["abxyz"], threshold=0.4) == pytest.approx(0.4)
    assert M.anls("abcde", ["abxyz"], threshold=0.0) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="threshold"):
        M.anls("a", ["a"], threshold=1.5)


# ---- VQA accuracy ------------------------------------------------------------------------------
@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_leave_one_out(matches, expected):
    refs = ["nokia"] * matches + ["samsung"] * (10 - matches)
    assert M.vqa_accuracy("nokia", refs) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "pred, ref",
    [
        ("Two", "2"),  # number words -> digits
        ("the dog.", "dog"),  # articles, trailing period
        ("isnt", "isn't"),  # contractions restored
        ("Coca-Cola", "coca cola"),  # "-" not next to a space -> replaced by a space
        ("1,000", "1000"),  # commas dropped
        ("yes!", "yes"),
        ("An apple?", "apple"),
        ("3.5", "3.5"),  # a period before a digit is kept
    ],
)
def test_vqa_accuracy_normalisation(pred, ref):
    assert M.vqa_accuracy(pred, [ref] * 3 + ["other"] * 7) == pytest.approx(0.9, abs=1e-12)


def test_vqa_accuracy_keeps_meaningful_differences():
    assert M.vqa_accuracy("3.5", ["35"] * 10) == 0.0
    assert M.vqa_accuracy("red car", ["car"] * 10) == 0.0  # no containment, unlike EM


def test_vqa_accuracy_needs_the_answer_list():
    with pytest.raises(ValueError, match="full list of human answers"):
        M.vqa_accuracy("a", ["a"])


# ---- ranking metrics against scikit-learn ------------------------------------------------------
def _random_ranking_cases(n_cases: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        n = int(rng.integers(2, 200))
        if i % 3 == 0:
            scores = rng.integers(0, 4, n).astype(np.float64)  # heavy ties
        elif i % 3 == 1:
            scores = np.round(rng.random(n), 2)  # some ties
        else:
            scores = rng.normal(size=n)
        labels = rng.random(n) < rng.uniform(0.05, 0.6)
        if labels.all() or not labels.any():
            labels[0] = not labels[0]
        yield scores, labels


def test_ranking_metrics_equal_sklearn_with_ties():
    sk = _require("sklearn.metrics")
    for scores, labels in _random_ranking_cases(600, seed=7):
        y = labels.astype(int)
        assert abs(M.auroc(scores, labels) - sk.roc_auc_score(y, scores)) <= 1e-9
        assert abs(M.average_precision(scores, labels) - sk.average_precision_score(y, scores)) <= 1e-9
        assert abs(M.ndcg_all(scores, labels) - sk.ndcg_score(y[None, :], scores[None, :], k=None)) <= 1e-9


def test_ranking_metrics_hand_cases():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert M.auroc(scores, labels) == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered
    assert M.average_precision(scores, labels) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): DCG = 1 + 1/log2(4); ideal = 1 + 1/log2(3)
    assert M.ndcg_all(scores, labels) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    # a full tie: AUROC 1/2, AP = prevalence, tie-averaged gain at both positions
    assert M.auroc([1.0, 1.0], [True, False]) == 0.5
    assert M.average_precision([1.0, 1.0], [True, False]) == 0.5
    assert M.ndcg_all([1.0, 1.0], [True, False]) == pytest.approx(0.5 * (1 + 1 / math.log2(3)))


@pytest.mark.parametrize("fn", [M.auroc, M.average_precision, M.ndcg_all])
def test_ranking_metrics_single_class_is_nan(fn):
    assert math.isnan(fn([0.3, 0.1, 0.2], [1, 1, 1]))
    assert math.isnan(fn([0.3, 0.1, 0.2], [False, False, False]))
    assert math.isnan(fn([0.5], [1]))


@pytest.mark.parametrize("fn", [M.auroc, M.average_precision, M.ndcg_all])
def test_ranking_metrics_validate_inputs(fn):
    with pytest.raises(ValueError, match="has 3 entries but labels has 2"):
        fn([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        fn(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="binary"):
        fn([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN or inf at index 1"):
        fn([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
