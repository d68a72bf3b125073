"""The offline tokenizer every tiny family shares: WordPiece over a small English vocabulary.

Nothing is downloaded. The vocabulary is a list of lower-case English words plus single
letters and digits (with ``##`` continuations) and punctuation, so any English question
encodes (out-of-vocabulary words are spelled letter by letter, non-ASCII symbols become
the unknown token) and decodes to readable, space-separated words. Each family wraps it
with its own special tokens (:func:`make_tokenizer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedTokenizerFast

__all__ = ["make_tokenizer"]

#: Whole-word entries of the tokenizer (lower case). Anything else is spelled with letters.
_WORDS: tuple[str, ...] = tuple(
    """
    a about above across after again against all almost along also always am an and animal another answer any
    anything are area around as ask assistant at away back background bag ball be because bed been before behind
    being below beside best between big bird black blue board boat body book both bottle bottom box boy brown
    building bus but by cake can car card cat center chair child circle city clock close code color colour
    computer could count cup dark date day describe did do does dog door down each eat either empty end even
    every eye face far few field find first five floor food for form four from front full gate get girl give go
    good grass gray green grey ground group had hair half hand has have he head helpful her here high him his
    hold horse house how i if image in inside into invoice is it its just keep kind kitchen know label large
    last left less letter light like line little long look lot low made make man many may me memo might more
    most much must my name near need next nine no none not note nothing number object of off on one only open
    or orange other our out outside over page paper part people person phone picture pin pink place plate
    please point purple question receipt rectangle red ref report right road room round said same say scene
    screen see serial seven she shape shirt show side sign six size sky small so some something square stand
    still street such system table take tell ten text than that the their them then there these they thing
    this those three through time to top total tree triangle two under up us use user very wall was water way
    we wear wearing were what when where which white who why will window with woman word would written yellow
    yes you your zero
    """.split()
)
#: Suffix continuations that keep common inflections to one extra token.
_SUFFIXES: tuple[str, ...] = ("s", "es", "ed", "ing", "er", "est", "ly", "ion", "al", "en")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
#: One pre-token: a newline, a run of letters/digits, or one other visible symbol.
_PRE_TOKEN_PATTERN = r"\n|[a-z0-9]+|[^\sa-z0-9]"


def _base_vocabulary(leading: Iterable[str]) -> dict[str, int]:
    """Token -> id: ``leading`` special tokens first, then words, letters, digits, punctuation."""
    entries = [*leading, "\n", *_PUNCTUATION, *_LETTERS, *_DIGITS]
    entries += [f"##{c}" for c in _LETTERS + _DIGITS] + [f"##{s}" for s in _SUFFIXES]
    entries += list(_WORDS)
    vocab: dict[str, int] = {}
    for token in entries:
        vocab.setdefault(token, len(vocab))
    return vocab


def make_tokenizer(
    *,
    unk: str,
    leading: tuple[str, ...],
    trailing: tuple[str, ...],
    bos: str | None,
    eos: str,
    pad: str,
    model_max_length: int,
    extra_special_tokens: Mapping[str, str] | None = None,
    add_bos: bool = True,
) -> PreTrainedTokenizerFast:
    """An offline WordPiece tokenizer wrapped in ``PreTrainedTokenizerFast``.

    Args:
        unk: the unknown token (must be in ``leading`` or ``trailing``).
        leading: special tokens given the lowest ids (e.g. LLaVA's ``<unk> <s> </s>``).
        trailing: special tokens appended after the regular vocabulary (e.g. Qwen's
            ``<|endoftext|>`` ... ``<|video_pad|>``, LLaVA's ``<image> <pad>``), in id order.
        bos: the BOS token; prepended to every encoded text (Llama style) unless ``add_bos``
            is False (the processor or template inserts it). None: no BOS token at all.
        eos, pad: end-of-sequence and padding tokens.
        model_max_length: the tokenizer's maximum length.
        extra_special_tokens: named special tokens exposed as attributes (``image_token``).

    Returns:
        The tokenizer, padding on the left.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _base_vocabulary(leading)
    wordpiece = models.WordPiece(vocab, unk_token=unk, continuing_subword_prefix="##", max_input_chars_per_word=64)
    backend = Tokenizer(wordpiece)
    backend.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PRE_TOKEN_PATTERN), behavior="removed", invert=True)
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    specials = [AddedToken(t, special=True, normalized=False) for t in (*leading, *trailing)]
    backend.add_special_tokens(specials)
    if len(backend.get_vocab()) != len(vocab) + len(trailing):
        raise RuntimeError("tiny tokenizer: special tokens collide with regular vocabulary entries.")
    if bos is not None and add_bos:
        bos_id = backend.token_to_id(bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, bos_id)]
        )
    named = {"unk_token": unk, "eos_token": eos, "pad_token": pad}
    if bos is not None:
        named["bos_token"] = bos
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side="left",
        model_max_length=model_max_length,
        extra_special_tokens=dict(extra_special_tokens or {}),
        **named,
    )
