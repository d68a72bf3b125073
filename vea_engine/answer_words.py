"""The words of a normalised answer for token F1, as ``qa-metrics`` 0.2.42 makes them.

``qa_metrics.f1.f1_score_with_precision_recall`` compares the word *sets* of
``lemmatize_text(normalize_answer(s))``, and its ``lemmatize_text`` does two things:

1. **Tokenise** with ``nltk.word_tokenize``: Punkt sentence splitting, then
   NLTK's Treebank word tokenizer on each sentence.
2. **Lemmatise** each word with ``WordNetLemmatizer().lemmatize(word, pos)``,
   ``pos`` taken from ``nltk.pos_tag([word])`` (the averaged-perceptron tagger
   run on the word *alone*); a tag starting with J / N / V / R selects
   adjective / noun / verb / adverb, anything else noun.

:func:`treebank_words` re-implements step 1 exactly and needs no third-party
package. ``normalize_answer`` leaves no punctuation (no Unicode ``P*`` character
and no ASCII punctuation), so Punkt returns the text as one sentence and the
only Treebank rules that can still fire are MacIntyre's contraction splits:
``cannot`` -> ``can not``, ``gimme`` -> ``gim me``, ``gonna`` -> ``gon na``,
``gotta`` -> ``got ta``, ``lemme`` -> ``lem me``, ``wanna`` -> ``wan na``
(whole words only). ``don't`` and ``it's`` lose their apostrophe during
normalisation (``dont``, ``its``) and are *not* split. The tests check all of
this against NLTK's own tokenizer.

Step 2 needs NLTK *and* two pieces of data that ``qa-metrics`` downloads when it
is imported: the tagger model (``taggers/averaged_perceptron_tagger_eng``) and
WordNet. :func:`load_qa_lemmatizer` builds the lemmatiser when all of it is
present, without downloading or writing anything:

* the tagger model must be on NLTK's data path (``NLTK_DATA``, ``~/nltk_data``,
  ``/usr/share/nltk_data``, ...);
* WordNet is NLTK's ``corpora/wordnet`` when NLTK finds it, otherwise a
  WordNet 3.0 dictionary directory -- ``$WNSEARCHDIR`` (WordNet's own
  variable), else ``/usr/share/wordnet`` (Debian / Ubuntu package
  ``wordnet-base``) -- read by :class:`WordNetDict`, which reproduces NLTK's
  ``WordNetLemmatizer.lemmatize``. (NLTK 3.10 cannot read that directory
  itself: it has no ``lexnames`` file, which NLTK's reader opens, and NLTK
  opens corpora only inside its data path.)

When a piece is missing, :func:`default_lemmatizer` returns ``None`` and logs
one warning per process naming it: token F1 then runs unlemmatised, which
differs from ``qa-metrics`` only on words the lemmatiser would have changed
(``"cats"`` vs ``"cat"``). WordNet without the tagger is *not* used (e.g. with
every word taken as a noun): that would be a third metric, equal to neither.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string
import unicodedata
from collections.abc import Callable
from pathlib import Path

__all__ = ["treebank_words", "WordNetDict", "QaLemmatizer", "load_qa_lemmatizer", "default_lemmatizer"]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Treebank tokenisation (nltk.tokenize.destructive.NLTKWordTokenizer, nltk 3.10.4)
# ---------------------------------------------------------------------------------------------

# MacIntyreContractions.CONTRACTIONS2, verbatim and in NLTK's order. The two patterns of
# CONTRACTIONS2 that contain an apostrophe (d'ye, more'n) and CONTRACTIONS3 ('tis, 'twas)
# cannot match text without punctuation and are left out.
_CONTRACTIONS = [
    re.compile(pattern)
    for pattern in (
        r"(?i)\b(can)(?#X)(not)\b",
        r"(?i)\b(gim)(?#X)(me)\b",
        r"(?i)\b(gon)(?#X)(na)\b",
        r"(?i)\b(got)(?#X)(ta)\b",
        r"(?i)\b(lem)(?#X)(me)\b",
        r"(?i)\b(wan)(?#X)(na)(?=\s)",
    )
]
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def treebank_words(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` for text without punctuation, e.g. ``normalize_answer``'s output.

    Pads the text with one space on each side (as NLTK does before its
    contraction rules), applies the contraction splits listed in the module
    docstring, and splits on whitespace: ``"i cannot answer"`` ->
    ``["i", "can", "not", "answer"]``, ``"wanna"`` -> ``["wan", "na"]``,
    ``"cannotx"`` -> ``["cannotx"]``. Idempotent: tokenising the words joined
    by spaces gives the same words.

    Args:
        text: the answer after normalisation; it must contain no Unicode
            punctuation (category ``P*``) and no ASCII punctuation, because the
            Treebank rules for punctuation are not reproduced.

    Returns:
        The words, in order (``[]`` for blank text).
    """
    if not isinstance(text, str):
        raise TypeError(f"treebank_words: expected a str, got {type(text).__name__}.")
    bad = next((ch for ch in text if ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P")), None)
    if bad is not None:
        raise ValueError(
            f"treebank_words: text contains the punctuation character {bad!r}; it tokenises normalised answers "
            "only -- pass the text through vea_engine.metrics.normalize_answer first."
        )
    text = " " + text + " "
    for pattern in _CONTRACTIONS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


# ---------------------------------------------------------------------------------------------
# WordNet lemmatisation
# ---------------------------------------------------------------------------------------------

_WORDNET_POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
# nltk.corpus.reader.wordnet.WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS (nltk 3.10.4).
_SUBSTITUTIONS = {
    "n": [("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")],
    "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")],
    "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "r": [],
}  # fmt: skip
# The first letter of a Penn Treebank tag -> WordNet part of speech (qa-metrics' get_wordnet_pos).
_TAG_TO_POS = {"J": "a", "N": "n", "V": "v", "R": "r"}
_SYSTEM_WORDNET_DIRS = ("/usr/share/wordnet",)


class WordNetDict:
    """NLTK's ``WordNetLemmatizer`` over a WordNet 3.0 dictionary directory, without NLTK.

    Reads the lemma column of ``index.{noun,verb,adj,adv}`` and the exception
    lists ``{noun,verb,adj,adv}.exc`` (about 150k lemmas, under a second) and
    reproduces ``WordNetCorpusReader._morphy``: a word listed in the exception
    list of ``pos`` maps to its listed base forms, otherwise each of NLTK's
    suffix rules for ``pos`` is applied once; the word itself and these
    candidates are kept when WordNet has them as lemmas of ``pos``.
    :meth:`lemmatize` returns the shortest candidate (the first of equal
    length), or the word unchanged when there is none.

    Args:
        root: the dictionary directory (``/usr/share/wordnet`` with Debian's
            ``wordnet-base``, or the ``dict`` folder of a WordNet 3.0 release).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        missing = [name for name in self.required_files() if not (self.root / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"WordNetDict: {self.root} is not a WordNet dictionary directory (missing {', '.join(missing)}); "
                "install Debian's wordnet-base or point WNSEARCHDIR at a WordNet 3.0 'dict' folder."
            )
        self._lemma_pos: dict[str, str] = {}  # lemma -> the parts of speech it is listed under, e.g. "nv"
        for name in _WORDNET_POS.values():
            with open(self.root / f"index.{name}", encoding="utf-8") as fp:
                for line in fp:
                    if line.startswith(" "):  # license header
                        continue
                    fields = line.split(None, 2)
                    if len(fields) >= 2:
                        self._lemma_pos[fields[0]] = self._lemma_pos.get(fields[0], "") + fields[1]
        self._exceptions: dict[str, dict[str, list[str]]] = {}
        for pos, name in _WORDNET_POS.items():
            table: dict[str, list[str]] = {}
            with open(self.root / f"{name}.exc", encoding="utf-8") as fp:
                for line in fp:
                    terms = line.split()
                    if terms:
                        table[terms[0]] = terms[1:]
            self._exceptions[pos] = table

    @staticmethod
    def required_files() -> list[str]:
        """The files read from the dictionary directory."""
        return [f"index.{name}" for name in _WORDNET_POS.values()] + [f"{name}.exc" for name in _WORDNET_POS.values()]

    def morphy(self, word: str, pos: str) -> list[str]:
        """All base forms of ``word`` as ``pos`` that WordNet knows (``WordNetCorpusReader._morphy``).

        Args:
            word: a lower-case word.
            pos: ``"n"``, ``"v"``, ``"a"`` or ``"r"``.

        Returns:
            Candidate lemmas in NLTK's order (the word itself first when it is one), no duplicates.
        """
        if pos not in _WORDNET_POS:
            raise ValueError(f"WordNetDict: pos must be one of 'n', 'v', 'a', 'r', got {pos!r}.")
        exceptions = self._exceptions[pos]
        if word in exceptions:
            forms = exceptions[word]
        else:
            forms = [word[: -len(old)] + new for old, new in _SUBSTITUTIONS[pos] if word.endswith(old)]
        result: list[str] = []
        for form in [word, *forms]:
            if pos in self._lemma_pos.get(form, "") and form not in result:
                result.append(form)
        return result

    def lemmatize(self, word: str, pos: str = "n") -> str:
        """``WordNetLemmatizer().lemmatize(word, pos)``: the shortest base form, else ``word``."""
        lemmas = self.morphy(word, pos)
        return min(lemmas, key=len) if lemmas else word


class QaLemmatizer:
    """``qa_metrics.utils.tools.lemmatize_text`` for normalised text, built from injectable parts.

    ``text`` -> :func:`treebank_words` -> for each word, ``pos`` from the first
    letter of ``tag(word)`` (J/N/V/R, else noun) -> ``lemmatize_word(word, pos)``
    -> the lemmas joined by single spaces. Results are cached per word.

    Args:
        tag: ``word -> Penn Treebank tag`` of the word on its own
            (qa-metrics: ``nltk.pos_tag([word])[0][1]``).
        lemmatize_word: ``(word, pos) -> lemma`` with ``pos`` in ``n v a r``
            (qa-metrics: ``WordNetLemmatizer().lemmatize``; or :meth:`WordNetDict.lemmatize`).
        description: where the parts come from, for logs and reports.
    """

    def __init__(self, tag: Callable[[str], str], lemmatize_word: Callable[[str, str], str], description: str = ""):
        if not callable(tag) or not callable(lemmatize_word):
            raise TypeError("QaLemmatizer: tag and lemmatize_word must be callables.")
        self.description = description
        self._tag = tag
        self._lemmatize_word = lemmatize_word
        self._lemma = functools.lru_cache(maxsize=1 << 16)(self._lemma_uncached)

    def _lemma_uncached(self, word: str) -> str:
        pos = _TAG_TO_POS.get(self._tag(word)[:1].upper(), "n")
        return self._lemmatize_word(word, pos)

    def __call__(self, text: str) -> str:
        return " ".join(self._lemma(word) for word in treebank_words(text))

    def __repr__(self) -> str:
        return f"QaLemmatizer({self.description!r})"


def _wordnet_dir() -> Path | None:
    """``$WNSEARCHDIR`` if set, else the first system WordNet directory; ``None`` if it has not the files."""
    env = os.environ.get("WNSEARCHDIR")
    for candidate in [env] if env else _SYSTEM_WORDNET_DIRS:
        if all((Path(candidate) / name).is_file() for name in WordNetDict.required_files()):
            return Path(candidate)
    return None


def _nltk_wordnet_lemmatize(load: bool = True) -> Callable[[str, str], str] | bool | None:
    """NLTK's ``WordNetLemmatizer().lemmatize`` when NLTK finds its ``wordnet`` corpus, else ``None``.

    With ``load=False`` only looks for the corpus: ``True`` when found.
    """
    import nltk

    for resource in ("corpora/wordnet.zip/wordnet/", "corpora/wordnet"):  # where NLTK's corpus loader looks
        try:
            nltk.data.find(resource)
        except (LookupError, OSError, ValueError):
            continue
        if not load:
            return True
        from nltk.stem import WordNetLemmatizer

        lemmatizer = WordNetLemmatizer()
        try:
            lemmatizer.lemmatize("cats")  # loads the corpus: fails here, not inside F1, if it is broken
        except (LookupError, OSError, ValueError):
            return None
        return lemmatizer.lemmatize
    return None


@functools.lru_cache(maxsize=1)
def load_qa_lemmatizer() -> tuple[QaLemmatizer | None, str]:
    """Build qa-metrics' lemmatiser from what is installed (once per process; nothing is downloaded).

    Returns:
        ``(lemmatiser, description)``: a :class:`QaLemmatizer` using NLTK's
        averaged-perceptron tagger and WordNet (NLTK's corpus, or a WordNet
        dictionary directory, see the module docstring) and a description of
        those parts; or ``(None, what is missing)`` when NLTK, the tagger model
        or WordNet is not there.
    """
    try:
        from nltk.tag.perceptron import PerceptronTagger
    except ImportError:
        return None, "nltk is not installed (it is an optional evaluation dependency: pip install nltk)"
    missing = []
    try:
        tagger = PerceptronTagger()
    except (LookupError, OSError, ValueError):
        tagger = None
        missing.append("NLTK's tagger model taggers/averaged_perceptron_tagger_eng is not on NLTK's data path")
    lemmatize_word = _nltk_wordnet_lemmatize(load=tagger is not None)  # only look when it would go unused
    source = "NLTK's corpora/wordnet"
    if lemmatize_word is None:
        directory = _wordnet_dir()
        if directory is not None:
            lemmatize_word = WordNetDict(directory).lemmatize if tagger is not None else True
            source = f"the WordNet dictionary {directory}"
        else:
            where = os.environ.get("WNSEARCHDIR") or ", ".join(_SYSTEM_WORDNET_DIRS)
            missing.append(f"WordNet is neither NLTK's corpora/wordnet nor a dictionary directory at {where}")
    if missing:
        return None, "; ".join(missing)

    def tag(word: str) -> str:
        return tagger.tag([word])[0][1]

    lemmatizer = QaLemmatizer(tag, lemmatize_word, f"NLTK's averaged-perceptron tagger and {source}")
    return lemmatizer, lemmatizer.description


_warned = False


def default_lemmatizer() -> QaLemmatizer | None:
    """The lemmatiser token F1 uses by default; ``None`` (with one logged warning per process) when unavailable."""
    global _warned
    lemmatizer, description = load_qa_lemmatizer()
    if lemmatizer is None and not _warned:
        _warned = True
        logger.warning(
            "token F1 runs without lemmatisation (%s). qa-metrics lemmatises with NLTK's tagger and WordNet, "
            "so F1 can differ from it on inflected words ('cats' vs 'cat').",
            description,
        )
    return lemmatizer
