"""Tiny Qwen3.5 and Qwen3.5-MoE: a hybrid decoder (Gated DeltaNet linear attention between softmax layers).

Three of every four real decoder layers are linear attention; the tiny one makes every third
layer (and the last) softmax attention, so its 6 layers hold two softmax layers (2 and 5) with
linear layers before, between and after the first. The softmax layers are gated (``q_proj``
also yields an output gate), q/k-normed and partially rotary (interleaved M-RoPE). The
vision tower is Qwen3-VL's without DeepStack; the processor is ``Qwen3VLProcessor`` (16-px
patches, 2x2 merge). The MoE variant swaps the MLP for routed experts plus a shared expert.

transformers always loads a Qwen3.5 checkpoint's tokenizer as ``Qwen3_5Tokenizer``: a byte-level
BPE rebuilt from the saved vocabulary and merges (whatever ``tokenizer.json`` says). So the tiny
tokenizer is one too (:func:`byte_level_tokenizer`): the 256 byte symbols plus merges for the
shared English word list, with the Qwen2 special tokens (and ``<think>``/``</think>``). It is
lossless and has no unknown token, like the real one. Generation ids are :mod:`.qwen_vl`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .qwen3_vl import qwen3_vl_processor
from .qwen_vl import QWEN_CONTENT_LOOP, QWEN_SPECIALS, qwen_generation, qwen_special_ids, qwen_text
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import _WORDS

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "QWEN3_5", "QWEN3_5_CHAT_TEMPLATE", "QWEN3_5_MOE", "byte_level_tokenizer", "softmax_every"]

#: The Qwen/Qwen3.5 chat template, as it renders user turns and the generation prompt (no default
#: system prompt, content trimmed, the assistant turn opened with ``<think>`` -- or with an empty
#: think block when ``enable_thinking`` is false, as VEA renders it for direct answers).
QWEN3_5_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set content = message['content'] %}"
    "{% else %}{% set content %}" + QWEN_CONTENT_LOOP + "{% endset %}{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ content | trim }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)

EXPECTED = FamilyExpectations(
    chat="<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n",
    image_token="<|image_pad|>",
    # smart_resize to multiples of 32: 200x150 -> 192x160 (12 x 10 patches of 16 px, merged 2x2); 448 -> 28 x 28
    image_grids={(200, 150): (1, 10, 12), (448, 448): (1, 28, 28)},
    image_tokens={(200, 150): 6 * 5, (448, 448): 14 * 14},
)

_PATCH = 16

#: Every this-many-th tiny decoder layer is softmax attention (real checkpoints: every 4th).
SOFTMAX_EVERY = 3


def softmax_every(num_layers: int, every: int = SOFTMAX_EVERY) -> list[str]:
    """``layer_types`` with softmax (``full_attention``) at every ``every``-th layer and at the last layer,
    linear attention elsewhere."""
    return [
        "full_attention" if (i + 1) % every == 0 or i == num_layers - 1 else "linear_attention"
        for i in range(num_layers)
    ]


#: Qwen2/Qwen3.5 pre-tokenisation: contractions, letter runs (with one leading non-letter), single digits,
#: punctuation runs, newlines and spaces (the pattern of transformers' Qwen tokenizers).
_QWEN_PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_symbols() -> dict[int, str]:
    """The byte-level alphabet: each byte as one printable character (printable Latin-1 bytes stand for
    themselves, the others are shifted above U+0100; a space is ``Ġ``)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, shift = {}, 0
    for byte in range(256):
        if byte in kept:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + shift)
            shift += 1
    return symbols


def byte_level_tokenizer(spec: TinySpec, extra: tuple[str, ...] = ("<think>", "</think>")) -> PreTrainedTokenizerFast:
    """A byte-level BPE in the shape ``Qwen3_5Tokenizer`` rebuilds: bytes plus merges for the shared word list.

    Every word of the tiny vocabulary, bare and after a space, is one token (its merges spell it
    left to right); anything else falls back to bytes, so every text round-trips exactly. The
    Qwen2 special tokens and ``extra`` follow the regular vocabulary.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbol = _byte_symbols()
    vocab = {symbol[byte]: index for index, byte in enumerate(sorted(symbol))}  # [256] bytes
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        for text in (word, " " + word):
            pieces = [symbol[b] for b in text.encode("utf-8")]
            merged = pieces[0]
            for piece in pieces[1:]:
                if merged + piece not in vocab:
                    vocab[merged + piece] = len(vocab)
                    merges.append((merged, piece))
                merged += piece
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (*QWEN_SPECIALS, *extra)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side="left",
        model_max_length=spec.max_position_embeddings,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def _tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return byte_level_tokenizer(spec)


def _text(spec: TinySpec, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The hybrid text decoder: gated softmax layers with partial interleaved M-RoPE, Gated DeltaNet layers."""
    rotary = spec.head_dim // 2  # rotary dims at partial_rotary_factor 0.5; real: 0.25 of 256
    half = rotary // 2
    text = qwen_text(
        spec,
        tokenizer,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10_000_000.0,
            "mrope_section": [half - 2 * (half // 4), half // 4, half // 4],  # real: [11, 11, 10]
            "mrope_interleaved": True,
            "partial_rotary_factor": 0.5,
        },
        layer_types=softmax_every(spec.num_hidden_layers),
        linear_conv_kernel_dim=4,
        linear_num_key_heads=spec.num_key_value_heads,
        linear_num_value_heads=spec.num_attention_heads,
        linear_key_head_dim=spec.head_dim,
        linear_value_head_dim=spec.head_dim,
        **extra,
    )
    del text["use_sliding_window"]  # not a Qwen3.5 text config field
    return text


def _vision(spec: TinySpec) -> dict[str, Any]:
    side = 8  # learned position embeddings for an 8 x 8 patch grid, interpolated to any grid (real: 48 x 48)
    return {
        "depth": spec.vision_num_hidden_layers,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_attention_heads,
        "out_hidden_size": spec.hidden_size,
        "hidden_act": "gelu_pytorch_tanh",
        "patch_size": _PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": side * side,
        "initializer_range": spec.initializer_range,
    }


def _qwen3_5_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Qwen3_5Config

    return Qwen3_5Config(
        text_config=_text(spec, tokenizer),
        vision_config=_vision(spec),
        tie_word_embeddings=False,
        **qwen_special_ids(tokenizer),
    )


def _qwen3_5_moe_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import Qwen3_5MoeConfig

    experts = {  # real 35B-A3B: 256 experts, 8 routed per token, 512 wide, one shared expert 512 wide
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": spec.intermediate_size // 2,
        "shared_expert_intermediate_size": spec.intermediate_size // 2,
    }
    text = _text(spec, tokenizer, **experts)
    del text["intermediate_size"]  # the MoE text config has experts instead of one MLP width
    return Qwen3_5MoeConfig(
        text_config=text,
        vision_config=_vision(spec),
        tie_word_embeddings=False,
        **qwen_special_ids(tokenizer),
    )


def _processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    return qwen3_vl_processor(spec, tokenizer, QWEN3_5_CHAT_TEMPLATE)


QWEN3_5 = FamilyBuilder(
    tokenizer=_tokenizer,
    config=_qwen3_5_config,
    processor=_processor,
    generation=qwen_generation,
    model_class="Qwen3_5ForConditionalGeneration",
    expected=EXPECTED,
)

QWEN3_5_MOE = FamilyBuilder(
    tokenizer=_tokenizer,
    config=_qwen3_5_moe_config,
    processor=_processor,
    generation=qwen_generation,
    model_class="Qwen3_5MoeForConditionalGeneration",
    expected=EXPECTED,
)
