"""Metrics against their reference implementations (qa-metrics, NLTK, scikit-learn) and hand-computed cases.

``qa-metrics``, ``nltk`` and ``scikit-learn`` are declared test dependencies:
when one is missing, the parity tests fail (they never skip). NLTK's *data*
(tagger model, WordNet) cannot be downloaded here: the WordNet tests skip
without a WordNet dictionary directory (Debian's ``wordnet-base``), and the
test against qa-metrics' fully real lemmatiser skips without NLTK's data.
"""

from __future__ import annotations

import importlib
import logging
import math
import random
import shutil
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest

from vea_engine import answer_words as AW
from vea_engine import metrics as M
from vea_engine import ranking as R
from vea_engine import vqa_metrics as V


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
# qa-metrics' F1 splits lemmatize_text(normalize_answer(s)); lemmatize_text = nltk.word_tokenize
# (Punkt + Treebank) + per-word pos_tag + WordNet lemmatiser. Punkt, the tagger and WordNet need
# NLTK data that this machine cannot download, so the oracle below runs qa-metrics' own code with
# only those parts replaced: Punkt by an untrained PunktSentenceTokenizer (it can only split at
# . ? !, which normalisation removes -- checked below), the tagger by a stand-in, and the
# lemmatiser by the identity (or by NLTK's WordNetLemmatizer over a WordNet copy, further down).
CONTRACTION_PIECES = [
    "cannot", "Cannot", "CANNOT", "can", "not", "can not", "gonna", "Gonna", "gon", "na", "wanna", "WaNNa", "wan",
    "gimme", "gim", "me", "lemme", "let", "gotta", "got", "ta", "don't", "dont", "do", "n't", "it's", "its", "it",
    "can't", "won't", "I'm", "'tis", "'twas", "d'ye", "more'n", "whaddya", "whatcha", "the", "a", "An", "x", "1",
    "3.14", "1,000", "cannot!", "can-not", "wanna.", "(gonna)", "“lemme”", "wannabe", "cannots", "_cannot",
    "2cannot", "e\u0301cannot", "cannot\u0301", "İ", "ß", "½", "cats", "running", "geese", "better",
]  # fmt: skip

# Hand-picked pairs: contractions, punctuation, articles, numbers, several references.
F1_PAIRS = [
    ("I cannot answer", ["cannot"]),
    ("I can not answer", ["cannot"]),
    ("Cannot!", ["can not", "no"]),
    ("can-not", ["cannot"]),
    ("can't", ["cannot"]),
    ("we're gonna win", ["going to win", "gon na"]),
    ("wanna", ["wan na"]),
    ("i wanna go", ["want to go"]),
    ("gimme five", ["gim me"]),
    ("lemme see", ["let me see"]),
    ("gotta go", ["got ta", "go"]),
    ("don't know", ["dont"]),
    ("don't know", ["do not know"]),
    ("It's red.", ["its", "it is red"]),
    ("the answer is 4,821", ["4821", "the answer"]),
    ("3.14 cannot", ["314"]),
    ("An apple, a pear", ["apple pear", "the pear"]),
    ("", ["cannot"]),
    ("cannot", [""]),
    ("whaddya want", ["what do you want"]),
    ("'Tis the season", ["tis season", "it is season"]),
]


def _contraction_corpus(n: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)

    def text(max_pieces: int) -> str:
        pieces = CONTRACTION_PIECES + PIECES[:20]
        return "".join(rng.choice(pieces) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, max_pieces)))

    return [(text(5), [text(3) for _ in range(rng.randint(1, 3))]) for _ in range(n)]


CONTRACTION_CORPUS = F1_PAIRS + _contraction_corpus(1500, seed=2510)


class _IdentityLemmatizer:
    def lemmatize(self, word: str, pos: str = "n") -> str:
        return word


def _toy_tag(word: str) -> str:
    """A deterministic stand-in for NLTK's tagger that produces all four WordNet classes."""
    for suffix, tag in (("ing", "VBG"), ("ed", "VBD"), ("ly", "RB"), ("est", "JJS"), ("er", "JJR")):
        if word.endswith(suffix):
            return tag
    return "CD" if word[:1].isdigit() else "NN"


@pytest.fixture
def qa_f1(monkeypatch):
    """qa-metrics' own F1, without lemmatisation (see the comment above); returns best F1 over refs."""
    f1_module = _require("qa_metrics.f1")
    tools = _require("qa_metrics.utils.tools")
    nltk = _require("nltk")
    from nltk.corpus.reader import wordnet as wordnet_module
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    punkt, treebank = PunktSentenceTokenizer(), NLTKWordTokenizer()
    monkeypatch.setattr(
        tools, "word_tokenize", lambda text: [w for sent in punkt.tokenize(text) for w in treebank.tokenize(sent)]
    )
    monkeypatch.setattr(nltk, "pos_tag", lambda tokens: [(t, _toy_tag(t)) for t in tokens])
    monkeypatch.setattr(tools, "wordnet", wordnet_module)  # only its ADJ/NOUN/VERB/ADV constants are read
    monkeypatch.setattr(tools, "lemmatizer", _IdentityLemmatizer())

    def best(pred: str, refs: list[str]) -> float:
        return max(f1_module.f1_score_with_precision_recall(ref, pred)["f1"] for ref in refs)

    best.tools = tools
    return best


def test_punkt_keeps_normalised_answers_in_one_sentence():
    _require("nltk")
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    punkt = PunktSentenceTokenizer()
    for pred, refs in CORPUS[:1000] + CONTRACTION_CORPUS:
        for s in (pred, *refs):
            text = M.normalize_answer(s)
            assert punkt.tokenize(text) == ([text] if text else []), repr(s)


def test_treebank_words_equal_nltk_word_tokenizer():
    _require("nltk")
    from nltk.tokenize import NLTKWordTokenizer

    treebank = NLTKWordTokenizer()
    texts = [M.normalize_answer(s) for pred, refs in CORPUS + CONTRACTION_CORPUS for s in (pred, *refs)]
    rng = random.Random(11)  # punctuation-free text around the word boundaries of the contraction rules
    alphabet = ["can", "not", "cannot", "CanNot", "gon", "na", "gonna", "gim", "me", "lem", "wan", "wanna", "got",
                "ta", "x", "1", " ", " ", "  ", "\t", "\n", "\u00a0", "\u0301", "é", "ß", "中", "\u0130", "\u212a",
                "²"]  # fmt: skip
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(20000)]
    split = 0
    for text in texts:
        words = AW.treebank_words(text)
        assert words == treebank.tokenize(text), repr(text)
        assert AW.treebank_words(" ".join(words)) == words  # idempotent
        split += words != text.split()
    assert split > 1000  # the rules fire


@pytest.mark.parametrize(
    "text, words",
    [
        ("i cannot answer", ["i", "can", "not", "answer"]),
        ("gonna wanna gimme lemme gotta", ["gon", "na", "wan", "na", "gim", "me", "lem", "me", "got", "ta"]),
        ("wanna", ["wan", "na"]),  # NLTK pads the text, so a final "wanna" is split too
        ("dont its cant", ["dont", "its", "cant"]),  # apostrophes are gone by now: nothing to split
        ("cannotx xcannot 2cannot cannot2", ["cannotx", "xcannot", "2cannot", "cannot2"]),  # whole words only
        ("", []),
    ],
)
def test_treebank_words_hand_cases(text, words):
    assert AW.treebank_words(text) == words


def test_treebank_words_refuses_punctuation():
    with pytest.raises(ValueError, match="normalize_answer"):
        AW.treebank_words("can't")
    with pytest.raises(ValueError, match="punctuation"):
        AW.treebank_words("gonna…")


def test_token_f1_equals_qa_metrics_without_lemmatisation(qa_f1):
    for pred, refs in CORPUS + CONTRACTION_CORPUS:
        expected = qa_f1(pred, refs)
        assert M.token_f1(pred, refs, lemmatize=False) == expected, (pred, refs)
        assert M.token_f1(pred, refs, lemmatize=None) == expected
        assert M.token_f1(pred, refs, lemmatize=lambda text: text) == expected  # the hook sees tokenised text
    tokenisation_matters = sum(  # pairs where the old whitespace split gave another F1
        qa_f1(pred, refs) != max(_whitespace_f1(pred, ref) for ref in refs) for pred, refs in CONTRACTION_CORPUS
    )
    assert tokenisation_matters > 100


def _whitespace_f1(pred: str, ref: str) -> float:
    """The old rule: F1 over whitespace-split normalised words (no Treebank split)."""
    p, r = set(M.normalize_answer(pred).split()), set(M.normalize_answer(ref).split())
    tp = len(p & r)
    return 0.0 if tp == 0 else 2 * (tp / len(r)) * (tp / len(p)) / (tp / len(r) + tp / len(p))


def test_token_f1_lemmatize_hook_sits_where_qa_metrics_lemmatizes(qa_f1, monkeypatch):
    class ToyLemmatizer:  # deterministic stand-in for WordNet: strip a plural "s"
        def lemmatize(self, word: str, pos: str = "n") -> str:
            return word[:-1] if len(word) > 3 and word.endswith("s") else word

    monkeypatch.setattr(qa_f1.tools, "lemmatizer", ToyLemmatizer())

    def toy(text: str) -> str:
        return " ".join(ToyLemmatizer().lemmatize(w) for w in text.split(" "))

    for pred, refs in CORPUS[:1000] + CONTRACTION_CORPUS:
        assert M.token_f1(pred, refs, lemmatize=toy) == qa_f1(pred, refs), (pred, refs)
    assert M.token_f1("three cats", ["cat"], lemmatize=toy) == pytest.approx(2 / 3)
    assert M.token_f1("three cats", ["cat"], lemmatize=False) == 0.0


def test_token_f1_equals_qa_metrics_with_real_nltk_lemmatizer():
    f1_module = _require("qa_metrics.f1")
    tools = _require("qa_metrics.utils.tools")
    try:
        tools.lemmatize_text("cats running")
    except LookupError:
        pytest.skip("NLTK data (punkt_tab, averaged_perceptron_tagger_eng, wordnet) is not installed; "
                    "qa-metrics downloads it from the internet, which this machine cannot reach")  # fmt: skip
    lemmatizer, description = AW.load_qa_lemmatizer()
    for pred, refs in CORPUS[:300] + CONTRACTION_CORPUS[:300]:
        expected = max(f1_module.f1_score_with_precision_recall(ref, pred)["f1"] for ref in refs)
        assert M.token_f1(pred, refs, lemmatize=tools.lemmatize_text) == expected
        if lemmatizer is not None:  # the default: the same tagger and WordNet, loaded by answer_words
            assert M.token_f1(pred, refs) == expected, (pred, refs, description)


@pytest.mark.parametrize(
    "pred, refs, expected",
    [
        ("the cat sat", ["a cat sat down"], 0.8),  # {cat, sat} vs {cat, sat, down}: p=1, r=2/3
        ("cat cat cat", ["cat"], 1.0),  # word sets, not bags
        ("red", ["blue", "red car", "red"], 1.0),  # best over references
        ("", [""], 0.0),  # two empty answers score 0 (qa-metrics)
        ("nothing", ["shared"], 0.0),
        # Treebank splits, by qa-metrics' rule:
        ("I cannot answer", ["cannot"], 2 / 3),  # {i, can, not, answer} vs {can, not}: p=1, r=1/2
        ("CANNOT", ["can not"], 1.0),
        ("Can-not", ["cannot"], 1.0),  # "-" is deleted first, then "cannot" is split
        ("can't", ["cannot"], 0.0),  # "cant" is not split
        ("gonna win", ["going to win"], 1 / 3),  # {gon, na, win} vs {going, to, win}
        ("wanna", ["wan na"], 1.0),
        ("gimme five", ["gim me"], 0.8),
        ("lemme see", ["let me see"], 2 / 3),
        ("gotta go", ["got ta", "go"], 0.8),  # best of 0.8 and 0.5
        ("don't know", ["dont"], 2 / 3),  # the apostrophe goes, nothing is split
        ("It's red.", ["its"], 2 / 3),
        ("cannotx", ["can"], 0.0),  # whole words only
    ],
)
def test_token_f1_hand_cases(pred, refs, expected):
    assert M.token_f1(pred, refs, lemmatize=False) == pytest.approx(expected, abs=1e-12)


def test_token_f1_rejects_bad_lemmatize():
    with pytest.raises(TypeError, match="lemmatize must be True, False, None or a callable"):
        M.token_f1("a", ["a"], lemmatize="wordnet")
    with pytest.raises(TypeError, match="lemmatize returned a list"):
        M.token_f1("a", ["a"], lemmatize=str.split)


# ---- token F1: default lemmatiser ---------------------------------------------------------------
@pytest.fixture
def fresh_lemmatizer(monkeypatch):
    """Forget the cached lemmatiser and the 'warned once' flag, before and after the test."""
    load = AW.load_qa_lemmatizer  # the cached original, even when a test replaces it
    load.cache_clear()
    monkeypatch.setattr(AW, "_warned", False)
    yield
    load.cache_clear()


def test_token_f1_default_without_lemmatiser_warns_once(fresh_lemmatizer, monkeypatch, caplog):
    monkeypatch.setattr(AW, "load_qa_lemmatizer", lambda: (None, "test: no tagger"))
    with caplog.at_level(logging.WARNING, logger="vea_engine.answer_words"):
        assert M.token_f1("three cats", ["cat"]) == 0.0
        assert M.token_f1("I cannot answer", ["cannot"]) == pytest.approx(2 / 3)  # still Treebank words
    warnings_logged = [r for r in caplog.records if "without lemmatisation" in r.getMessage()]
    assert len(warnings_logged) == 1 and "test: no tagger" in warnings_logged[0].getMessage()


def test_token_f1_default_uses_the_lemmatiser(fresh_lemmatizer, monkeypatch):
    lemmatizer = AW.QaLemmatizer(_toy_tag, lambda word, pos: word.rstrip("s") if pos == "n" else word, "toy")
    monkeypatch.setattr(AW, "load_qa_lemmatizer", lambda: (lemmatizer, "toy"))
    assert M.token_f1("three cats", ["cat"]) == pytest.approx(2 / 3)
    assert M.token_f1("three cats", ["cat"], lemmatize=False) == 0.0


def test_load_qa_lemmatizer_names_what_is_missing(fresh_lemmatizer, monkeypatch, tmp_path):
    nltk = _require("nltk")
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))  # an empty directory: no WordNet there
    lemmatizer, description = AW.load_qa_lemmatizer()
    if lemmatizer is not None:  # NLTK's own tagger and wordnet corpus are installed here
        assert lemmatizer("cats") == "cat" and "NLTK's corpora/wordnet" in description
        return
    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
    except LookupError:
        assert "averaged_perceptron_tagger_eng is not on NLTK's data path" in description
    if AW._nltk_wordnet_lemmatize(load=False) is None:
        assert f"a dictionary directory at {tmp_path}" in description


def test_engine_imports_and_scores_without_nltk():
    code = (
        "import sys; sys.modules['nltk'] = None\n"  # makes 'import nltk' fail
        "from vea_engine import metrics as M, answer_words as AW\n"
        "assert M.exact_match('The answer is 4821.', ['4821']) == 1.0\n"
        "assert abs(M.token_f1('I cannot answer', ['cannot']) - 2 / 3) < 1e-12\n"
        "lemmatizer, why = AW.load_qa_lemmatizer()\n"
        "assert lemmatizer is None and 'nltk is not installed' in why, why\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "without lemmatisation (nltk is not installed" in result.stderr  # the one warning


# ---- token F1: WordNet (skipped without a WordNet dictionary directory) ------------------------
@pytest.fixture(scope="module")
def wordnet_dir():
    directory = AW._wordnet_dir()
    if directory is None:
        pytest.skip("no WordNet dictionary directory: apt-get install wordnet-base, or set WNSEARCHDIR")
    return directory


@pytest.fixture(scope="module")
def nltk_wordnet(wordnet_dir, tmp_path_factory):
    """NLTK's own WordNetCorpusReader over a copy of the same dictionary files.

    NLTK 3.10 reads corpora only inside its data path and opens two files that
    Debian does not ship: ``lexnames`` (names of the synset files; stub names
    here, morphy never reads them) and ``index.sense`` (empty here; only NLTK's
    version mapping reads it).
    """
    nltk = _require("nltk")
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = tmp_path_factory.mktemp("nltk_data")
    corpus = root / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    names = [f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")]
    for name in names + [f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")]:
        shutil.copyfile(wordnet_dir / name, corpus / name)
    (corpus / "lexnames").write_text("".join(f"{i:02d} lexname{i} 0\n" for i in range(45)))
    (corpus / "index.sense").write_text("")
    nltk.data.path.insert(0, str(root))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "multilingual functions are not available"
            return WordNetCorpusReader(str(corpus), None)
    finally:
        nltk.data.path.remove(str(root))


def test_wordnet_dict_equals_nltk_morphy(wordnet_dir, nltk_wordnet):
    ours = AW.WordNetDict(wordnet_dir)
    rng = random.Random(5)
    lemmas = sorted(nltk_wordnet._lemma_pos_offset_map)
    words = set(rng.sample(lemmas, 4000))
    for lemma in rng.sample(lemmas, 4000):  # inflect: every suffix rule and its reverse
        for suffix in ("s", "es", "ies", "ves", "xes", "zes", "ches", "shes", "men", "ed", "ing", "er", "est"):
            words.add(lemma + suffix)
            words.add(lemma[:-1] + suffix)
    for pos in "nvar":
        words.update(nltk_wordnet._exception_map[pos])
    words.update(["geese", "children", "better", "best", "ran", "running", "mice", "us", "cats", "was", "axes"])
    for word in sorted(words):
        for pos in "nvar":
            assert ours.morphy(word, pos) == nltk_wordnet._morphy(word, pos), (word, pos)
    assert ours.lemmatize("geese") == "goose" and ours.lemmatize("running", "v") == "run"
    assert ours.lemmatize("better", "a") == "good"  # shortest of better / good / well, first of equal length
    with pytest.raises(ValueError, match="pos must be one of"):
        ours.morphy("cats", "x")


def test_token_f1_with_wordnet_equals_qa_metrics(qa_f1, monkeypatch, wordnet_dir, nltk_wordnet):
    nltk = _require("nltk")
    from nltk.stem import WordNetLemmatizer

    # qa-metrics with NLTK's real WordNet lemmatiser (reading the copy) and the stand-in tagger ...
    monkeypatch.setattr(nltk.corpus, "wordnet", nltk_wordnet)
    monkeypatch.setattr(qa_f1.tools, "wordnet", nltk_wordnet)
    monkeypatch.setattr(qa_f1.tools, "lemmatizer", WordNetLemmatizer())
    # ... against ours with the same tagger and WordNetDict on the original files.
    ours = AW.QaLemmatizer(_toy_tag, AW.WordNetDict(wordnet_dir).lemmatize, "toy tagger")
    pairs = [
        ("three cats", ["cat"]),
        ("The geese were running", ["goose run", "geese"]),
        ("children played", ["child play"]),
        ("better answers", ["good answer"]),
        ("mice", ["mouse", "mice"]),
    ]
    lemmatised = 0
    for pred, refs in pairs + CONTRACTION_CORPUS + CORPUS[:1000]:
        expected = qa_f1(pred, refs)
        assert M.token_f1(pred, refs, lemmatize=ours) == expected, (pred, refs)
        lemmatised += expected != M.token_f1(pred, refs, lemmatize=False)
    assert lemmatised >= len(pairs)  # each hand pair changes when lemmatised
    assert M.token_f1("three cats", ["cat"], lemmatize=ours) == pytest.approx(2 / 3)  # cats -> cat
    assert M.token_f1("geese", ["goose"], lemmatize=ours) == 1.0  # WordNet exception list
    assert M.token_f1("I cannot answer", ["cannot"], lemmatize=ours) == pytest.approx(2 / 3)


class _StandInPerceptronTagger:
    """Takes the place of nltk.tag.perceptron.PerceptronTagger, whose model cannot be downloaded here."""

    def tag(self, tokens):
        return [(t, _toy_tag(t)) for t in tokens]


def test_default_lemmatiser_is_built_from_tagger_and_wordnet(
    fresh_lemmatizer, qa_f1, monkeypatch, wordnet_dir, nltk_wordnet
):
    nltk = _require("nltk")
    import nltk.tag.perceptron as perceptron
    from nltk.stem import WordNetLemmatizer

    monkeypatch.setattr(perceptron, "PerceptronTagger", _StandInPerceptronTagger)
    monkeypatch.setattr(nltk.corpus, "wordnet", nltk_wordnet)  # for qa-metrics' WordNetLemmatizer
    monkeypatch.setattr(qa_f1.tools, "wordnet", nltk_wordnet)
    monkeypatch.setattr(qa_f1.tools, "lemmatizer", WordNetLemmatizer())
    pairs = [("three cats", ["cat"]), ("The geese were running", ["goose run"])] + CONTRACTION_CORPUS[:300]

    monkeypatch.setenv("WNSEARCHDIR", str(wordnet_dir))  # 1. WordNet from the dictionary directory
    lemmatizer, description = AW.load_qa_lemmatizer()
    assert lemmatizer is not None and "averaged-perceptron tagger" in description
    for pred, refs in pairs:
        assert M.token_f1(pred, refs) == qa_f1(pred, refs), (pred, refs, description)
    assert M.token_f1("three cats", ["cat"]) == pytest.approx(2 / 3)

    AW.load_qa_lemmatizer.cache_clear()  # 2. NLTK's own corpora/wordnet, found on its data path
    data_root = str(Path(nltk_wordnet.root.path).parents[1])
    monkeypatch.setattr(nltk.data, "path", [data_root, *nltk.data.path])
    lemmatizer, description = AW.load_qa_lemmatizer()
    assert lemmatizer is not None and "NLTK's corpora/wordnet" in description
    for pred, refs in pairs:
        assert M.token_f1(pred, refs) == qa_f1(pred, refs), (pred, refs, description)


@pytest.mark.parametrize("fn", [M.exact_match, M.token_f1, V.anls, V.vqa_accuracy])
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
    assert V.anls(pred, refs) == pytest.approx(expected, abs=1e-12)


def test_anls_threshold():
    assert V.anls("abcde", ["abxyz"], threshold=0.4) == pytest.approx(0.4)
    assert V.anls("abcde", ["abxyz"], threshold=0.0) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="threshold"):
        V.anls("a", ["a"], threshold=1.5)


# ---- VQA accuracy ------------------------------------------------------------------------------
@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_leave_one_out(matches, expected):
    refs = ["nokia"] * matches + ["samsung"] * (10 - matches)
    assert V.vqa_accuracy("nokia", refs) == pytest.approx(expected, abs=1e-12)


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
    assert V.vqa_accuracy(pred, [ref] * 3 + ["other"] * 7) == pytest.approx(0.9, abs=1e-12)


def test_vqa_accuracy_keeps_meaningful_differences():
    assert V.vqa_accuracy("3.5", ["35"] * 10) == 0.0
    assert V.vqa_accuracy("red car", ["car"] * 10) == 0.0  # no containment, unlike EM


def test_vqa_accuracy_needs_the_answer_list():
    with pytest.raises(ValueError, match="full list of human answers"):
        V.vqa_accuracy("a", ["a"])


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
        assert abs(R.auroc(scores, labels) - sk.roc_auc_score(y, scores)) <= 1e-9
        assert abs(R.average_precision(scores, labels) - sk.average_precision_score(y, scores)) <= 1e-9
        assert abs(R.ndcg_all(scores, labels) - sk.ndcg_score(y[None, :], scores[None, :], k=None)) <= 1e-9


def test_ranking_metrics_hand_cases():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert R.auroc(scores, labels) == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered
    assert R.average_precision(scores, labels) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): DCG = 1 + 1/log2(4); ideal = 1 + 1/log2(3)
    assert R.ndcg_all(scores, labels) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    # a full tie: AUROC 1/2, AP = prevalence, tie-averaged gain at both positions
    assert R.auroc([1.0, 1.0], [True, False]) == 0.5
    assert R.average_precision([1.0, 1.0], [True, False]) == 0.5
    assert R.ndcg_all([1.0, 1.0], [True, False]) == pytest.approx(0.5 * (1 + 1 / math.log2(3)))


@pytest.mark.parametrize("fn", [R.auroc, R.average_precision, R.ndcg_all])
def test_ranking_metrics_single_class_is_nan(fn):
    assert math.isnan(fn([0.3, 0.1, 0.2], [1, 1, 1]))
    assert math.isnan(fn([0.3, 0.1, 0.2], [False, False, False]))
    assert math.isnan(fn([0.5], [1]))


@pytest.mark.parametrize("fn", [R.auroc, R.average_precision, R.ndcg_all])
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
