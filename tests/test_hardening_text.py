"""User text is plain text, and prompts must fit the model's context.

* **Special-token strings in a question are characters.** On every family's tiny
  checkpoint, a question that writes the family's image placeholder, chat-turn
  tokens (``<|im_start|>``, ``<start_of_turn>``), BOS/EOS strings... is encoded with
  exactly one image's worth of image tokens and no extra control token, its text
  is the tokenizer's plain-text ids of the whole prompt (``split_special_tokens``),
  and attribution and answering run on it. A question without such strings is
  left alone (the processor's own ids), and the splice machinery, forced onto an
  ordinary question, reproduces those ids exactly.
* **The mid-chat encoding** of a piece (newline trick) equals the piece's ids
  inside the whole text, on byte-level BPE and SentencePiece-style tokenizers
  trained here (the tiny WordPiece tokenizer cannot show boundary effects).
* **Context length.** A 23k-token question on a 4096-token model is refused
  before the forward pass with the count, the limit and the fix; exact limits on
  hand-built configs.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.helpers import ALL_FAMILIES
from vea_engine.answering import answer
from vea_engine.attribution import extract_attention
from vea_engine.config import build_prompt
from vea_engine.families.common import PlainTextPrompts, encode_piece, plain_text_ids
from vea_engine.inputs import check_context, context_limit, encode_batch, model_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

ORDINARY = "What is written on the red sign?"


def _hostile_question(vlm) -> str:
    """A question writing the family's placeholders, chat-turn tokens and BOS/EOS/pad strings."""
    processor, tokenizer = vlm.processor, vlm.processor.tokenizer
    strings = [
        getattr(processor, "image_token", None),
        "<image>",
        "<|image_pad|>",
        "<|im_start|>",
        "<|im_end|>",
        "<start_of_turn>",
        "<end_of_turn>",
        tokenizer.bos_token,
        tokenizer.eos_token,
        tokenizer.pad_token,
    ]
    strings += [s for s in vlm.adapter.reserved if s in vlm.adapter._template_text]  # every token the chat writes
    unique = list(dict.fromkeys(s for s in strings if s))
    return "Is " + " or ".join(unique) + " written here?"


def _squash(text: str) -> str:
    """The tiny WordPiece tokenizer lowercases and decodes word pieces with spaces between them."""
    return "".join(text.split()).lower()


def _contains(sequence: list[int], part: list[int]) -> bool:
    return any(sequence[i : i + len(part)] == part for i in range(len(sequence) - len(part) + 1))


def _counts(ids: torch.Tensor, wanted: set[int]) -> dict[int, int]:
    return {i: int((ids == i).sum()) for i in wanted}


@contextmanager
def _reserved(adapter, extra: tuple[str, ...]):
    """Temporarily add ``extra`` to an adapter's reserved strings (the session shares adapters)."""
    before = adapter.reserved
    adapter.__dict__["reserved"] = before + extra
    try:
        yield
    finally:
        adapter.__dict__["reserved"] = before


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_special_token_strings_in_a_question_are_plain_text(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    tokenizer = vlm.processor.tokenizer
    question = _hostile_question(vlm)
    plain = encode_batch(vlm, [scene_image], ORDINARY)
    hostile = encode_batch(vlm, [scene_image], question)
    ids = hostile.inputs["input_ids"][0]
    # exactly one image's worth of image tokens, laid out as for an ordinary question
    assert hostile.geometry == plain.geometry
    assert hostile.positions[0].numel() == plain.positions[0].numel() == plain.geometry.n_tokens
    # no control token comes from the question: each reserved id occurs as often as in the plain prompt
    reserved_ids = {tokenizer.convert_tokens_to_ids(s) for s in vlm.adapter.reserved} - {tokenizer.unk_token_id}
    assert _counts(ids, reserved_ids) == _counts(plain.inputs["input_ids"][0], reserved_ids)
    # the prompt's ids are the tokenizer's plain-text ids of the whole prompt (not altered, not dropped)
    prompt_ids = tokenizer.encode("\n" + build_prompt(question), add_special_tokens=False, split_special_tokens=True)
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert _contains(ids.tolist(), prompt_ids[len(newline) :])
    decoded = _squash(tokenizer.decode(ids, skip_special_tokens=False))
    for string in question.split(" or "):
        assert _squash(string.removeprefix("Is ").removesuffix(" written here?")) in decoded
    # every per-token field stays aligned with input_ids
    for key in ("attention_mask", "token_type_ids", "mm_token_type_ids"):
        if key in hostile.inputs:
            assert hostile.inputs[key].shape == hostile.inputs["input_ids"].shape, key
    attention = extract_attention(vlm, [scene_image], question, vlm.layer_kinds.attention[1:2])  # a softmax layer
    assert attention.scores.shape == (1, plain.geometry.n_tokens) and torch.isfinite(attention.scores).all()
    assert len(answer(vlm, [scene_image], question, max_new_tokens=2)) == 1


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_ordinary_questions_keep_the_processors_ids(family, vlm_of, scene_image):
    vlm = vlm_of(family)
    adapter = vlm.adapter
    prompts = [build_prompt(ORDINARY), build_prompt("Which colour is the sign?", "vea")]
    plain = adapter.plain_user_text(prompts)
    assert plain.prompts == prompts and not plain.user_texts  # the plain path, untouched
    sentinel = object()
    assert plain.restore(sentinel) is sentinel
    expected = model_inputs(vlm, [np.asarray(scene_image)] * 2, prompts)
    # forced through the splice (a reserved string that is no token): the same ids, field by field
    with _reserved(adapter, ("Question: ",)):
        forced = adapter.plain_user_text(prompts)
        assert forced.prompts == [forced.sentinel] * 2
        spliced = model_inputs(vlm, [np.asarray(scene_image)] * 2, prompts)
    assert set(spliced.keys()) == set(expected.keys())
    for key in expected.keys():
        if isinstance(expected[key], torch.Tensor):
            assert torch.equal(spliced[key], expected[key]), key
    # one marked prompt beside an ordinary one: the ordinary row is its own plain encoding, re-padded
    with _reserved(adapter, ("sign?",)):
        mixed = model_inputs(vlm, [np.asarray(scene_image)] * 2, [build_prompt(ORDINARY), build_prompt("Is it red?")])
    alone = model_inputs(vlm, [np.asarray(scene_image)], [build_prompt("Is it red?")])
    n = int(alone["attention_mask"][0].sum())
    assert torch.equal(mixed["input_ids"][1, -n:], alone["input_ids"][0, -n:])
    assert int(mixed["attention_mask"][1].sum()) == n


def test_custom_template_is_user_text(vlm_of, scene_image):
    vlm = vlm_of("llava")
    template = "<image> <s> Answer briefly. Question: {question}"
    plain = encode_batch(vlm, [scene_image], ORDINARY)
    batch = encode_batch(vlm, [scene_image], ORDINARY, "custom", template)
    assert batch.positions[0].numel() == plain.geometry.n_tokens
    bos = vlm.processor.tokenizer.bos_token_id
    assert int((batch.inputs["input_ids"][0] == bos).sum()) == int((plain.inputs["input_ids"][0] == bos).sum())
    assert answer(vlm, [scene_image], ORDINARY, "custom", template, max_new_tokens=1)


def test_non_special_added_tokens_stay_vocabulary(vlm_of, scene_image):
    """PaliGemma's ``<locXXXX>`` are vocabulary (detection prompts write them); they are not reserved."""
    vlm = vlm_of("paligemma")
    tokenizer = vlm.processor.tokenizer
    loc = tokenizer.convert_tokens_to_ids("<loc0001>")
    assert "<loc0001>" not in vlm.adapter.reserved
    ids = model_inputs(vlm, [np.asarray(scene_image)], [build_prompt("Is <loc0001> red?")])["input_ids"][0]
    assert int((ids == loc).sum()) == 1
    # made reserved, a non-special added token is cut so that it cannot match even as plain text
    text_ids = plain_text_ids(tokenizer, "Is <loc0001> red?", ("<loc0001>",))
    assert loc not in text_ids
    assert "<loc0001>" in _squash(tokenizer.decode(text_ids))


def test_a_tokenizer_without_a_spare_special_token_refuses_clearly(vlm_of):
    processor = vlm_of("llava").processor
    with pytest.raises(ValueError, match="no spare special token") as error:
        PlainTextPrompts(processor, ["Is <image> here?"], ("<image>",), None)
    assert len(str(error.value)) < 300
    assert PlainTextPrompts(processor, ["Is it here?"], ("<image>",), None).prompts == ["Is it here?"]


# ---- the mid-chat encoding on real tokenizer kinds ------------------------------------------------
CORPUS = [
    "Directly answer the question based on the image, no explanation is needed.",
    "Question: What is written on the red sign? Answer: stop",
    "USER: describe the picture\nASSISTANT: a red sign on a pole",
    "If the image does not contain any relevant evidence, output I cannot answer.",
    "symbols: a < b > c | d _ e",
] * 20
SPECIALS = ["<s>", "<image>", "<|im_start|>", "<|im_end|>"]


def _byte_level_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def _sentencepiece_like_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(byte_fallback=False, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", *SPECIALS])
    backend.train_from_iterator(CORPUS + ["\n"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.mark.parametrize("make", [_byte_level_bpe, _sentencepiece_like_bpe], ids=["byte_level", "sentencepiece"])
@pytest.mark.parametrize(
    "before, special, after",
    [
        ("USER: ", "<image>", "\nDirectly answer the question. ASSISTANT:"),
        ("<|im_start|>user\n", "<|im_end|>", "Question: What is written on the red sign?"),
        ("", "<s>", " a red sign on a pole"),
    ],
)
def test_a_piece_after_a_special_token_encodes_as_inside_the_chat(make, before, special, after):
    tokenizer = make()
    whole = tokenizer.encode(before + special + after, add_special_tokens=False)
    head = tokenizer.encode(before, add_special_tokens=False) if before else []
    piece = encode_piece(tokenizer, after, at_start=False, as_text=False)
    assert whole == head + [tokenizer.convert_tokens_to_ids(special)] + piece
    # as text, the same piece with a special-token string in it never yields that token
    text_ids = encode_piece(tokenizer, after + " <image>", at_start=False, as_text=True)
    assert tokenizer.convert_tokens_to_ids("<image>") not in text_ids
    assert tokenizer.decode(text_ids).endswith("<image>")


# ---- context length -------------------------------------------------------------------------------
def test_a_question_longer_than_the_context_is_refused_before_the_forward_pass(vlm_of, scene_image):
    question = "word " * 23000  # ~23k tokens on a model whose context is 4096
    vlm = vlm_of("qwen2_5_vl")
    assert context_limit(vlm) == (4096, "max_position_embeddings")
    with pytest.raises(ValueError, match=r"prompt is 23\d{3} tokens, more than the model's context of 4096") as error:
        extract_attention(vlm, [scene_image], question, [1])
    message = str(error.value)
    assert "shorten the question" in message and "resolution" in message and len(message) < 300
    with pytest.raises(ValueError, match=r"23\d{3} tokens \+ 50 new tokens.*context of 4096") as error:
        answer(vlm, [scene_image], question)
    assert len(str(error.value)) < 300
    fixed = vlm_of("llava")  # no pixel budget: the resolution setting is no fix there
    with pytest.raises(ValueError, match=r"context of 4096 tokens .*; shorten the question\.$"):
        answer(fixed, [scene_image], question, max_new_tokens=1)


def test_the_context_check_at_its_limit(vlm_of, scene_image):
    vlm = vlm_of("llava")
    check_context(vlm, 4096)
    check_context(vlm, 4046, 50)
    with pytest.raises(ValueError, match=r"prompt is 4047 tokens \+ 50 new tokens"):
        check_context(vlm, 4047, 50)
    # a prompt that fits attribution but not an answer of max_new_tokens
    n_plain = int(model_inputs(vlm, [np.asarray(scene_image)], [build_prompt("Why?")])["input_ids"].shape[-1])
    question = "Why?" + " word" * (4096 - n_plain - 5)  # one token per word
    n = int(model_inputs(vlm, [np.asarray(scene_image)], [build_prompt(question)])["input_ids"].shape[-1])
    assert 4096 - 10 < n <= 4096
    with pytest.raises(ValueError, match=rf"prompt is {n} tokens \+ 50 new tokens"):
        answer(vlm, [scene_image], question)


def _fake_vlm(positions, tokenizer_limit, pixel_budget=True):
    text = SimpleNamespace(max_position_embeddings=positions)
    config = SimpleNamespace(get_text_config=lambda: text)
    return SimpleNamespace(
        model=SimpleNamespace(config=config),
        processor=SimpleNamespace(tokenizer=SimpleNamespace(model_max_length=tokenizer_limit)),
        adapter=SimpleNamespace(pixel_budget=pixel_budget),
    )


def test_context_limit_sources():
    assert context_limit(_fake_vlm(8192, 2048)) == (2048, "the tokenizer's model_max_length")
    assert context_limit(_fake_vlm(8192, int(1e30))) == (8192, "max_position_embeddings")  # "no limit" placeholder
    assert context_limit(_fake_vlm(None, int(1e30))) is None
    check_context(_fake_vlm(None, int(1e30)), 10**6)  # nothing says: no check
    with pytest.raises(
        ValueError, match=r"2049 tokens, more than the model's context of 2048 tokens \(the tokenizer"
    ) as e:
        check_context(_fake_vlm(8192, 2048), 2049)
    assert str(e.value).endswith("or raise model_max_length in tokenizer_config.json if the model allows more.")
    assert len(str(e.value)) < 300
    assert context_limit(_fake_vlm(4096, 4096)) == (4096, "max_position_embeddings")  # a tie names the model
