"""Tiny Idefics3 and SmolVLM: image splitting into tiles + a global view, pixel shuffle, row/col tags.

Both use a Llama decoder and a SigLIP-style tower; they differ in tokenizer, generation ids,
transformers classes, chat template, patch size and pixel-shuffle factor (:data:`_SPLIT_IMAGE`),
and SmolVLM's processor also takes videos (and needs ``num2words``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .common import greedy_ids, llama_text
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = [
    "IDEFICS3",
    "IDEFICS3_CHAT_TEMPLATE",
    "IDEFICS3_EXPECTED",
    "SMOLVLM",
    "SMOLVLM_CHAT_TEMPLATE",
    "SMOLVLM_EXPECTED",
]

#: HuggingFaceM4/Idefics3-8B-Llama3 chat template:
#: ``<|begin_of_text|>User:<image>{text}<end_of_utterance>\nAssistant:``.
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}"
    "{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
#: HuggingFaceTB/SmolVLM-* chat template (transformers' SmolVLM default).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}"
    "{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}"
    "{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

IDEFICS3_EXPECTED = FamilyExpectations(
    chat="<|begin_of_text|>User:<image>{question}<end_of_utterance>\nAssistant:",
    image_token="<image>",
    # longest side -> 224, sides up to multiples of 112: 2 x 2 tiles + global, 4 x 4 tokens each (14 px, shuffle 2)
    image_tokens={(200, 150): 5 * 16, (448, 448): 5 * 16},
    split_prompt=True,
)
SMOLVLM_EXPECTED = FamilyExpectations(
    chat="<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:",
    image_token="<image>",
    # 2 x 2 tiles of 192 px + global, 3 x 3 tokens each (16 px patches, shuffle 4)
    image_tokens={(200, 150): 5 * 9, (448, 448): 5 * 9},
    split_prompt=True,
)

_SPLIT_IMAGE_SPECIALS = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)


class _SplitImage(NamedTuple):
    prefix: str  # of the transformers class names: f"{prefix}Config", f"{prefix}Processor"...
    patch: int  # vision patch size in px
    scale: int  # pixel-shuffle factor
    chat_template: str


#: Per family. Patch size and pixel-shuffle factor of the tiny vision towers as in the real ones
#: (Idefics3: 14 / 2, SmolVLM: 16 / 4).
_SPLIT_IMAGE = {
    "idefics3": _SplitImage("Idefics3", 14, 2, IDEFICS3_CHAT_TEMPLATE),
    "smolvlm": _SplitImage("SmolVLM", 16, 4, SMOLVLM_CHAT_TEMPLATE),
}
#: Tiles per side of the longest image side (real: 4).
_SPLIT_IMAGE_TILES = 2


def _idefics3_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return make_tokenizer(
        unk="<unk>",
        leading=("<unk>",),
        trailing=("<|begin_of_text|>", "<|end_of_text|>", "<pad>", *_SPLIT_IMAGE_SPECIALS),
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
    )


def _smolvlm_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    return make_tokenizer(
        unk="<|endoftext|>",  # SmolLM2 maps unknown text to <|endoftext|>
        leading=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        trailing=(*_SPLIT_IMAGE_SPECIALS, "<video>"),
        bos=None,
        eos="<end_of_utterance>",
        pad="<|im_end|>",
        model_max_length=spec.max_position_embeddings,
    )


def _split_image_seq_len(family: str, spec: TinySpec) -> int:
    facts = _SPLIT_IMAGE[family]
    return (spec.image_size // facts.patch // facts.scale) ** 2


def _split_image_config(family: str) -> Callable[[TinySpec, Any], PreTrainedConfig]:
    def make(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
        import transformers

        facts = _SPLIT_IMAGE[family]
        text = llama_text(spec, tokenizer, rope_theta=100_000.0)
        vision = {
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_hidden_layers": spec.vision_num_hidden_layers,
            "num_attention_heads": spec.vision_num_attention_heads,
            "image_size": spec.image_size,
            "patch_size": facts.patch,
            "hidden_act": "gelu_pytorch_tanh",
            "initializer_range": spec.initializer_range,
        }
        cls = getattr(transformers, f"{facts.prefix}Config")
        return cls(
            text_config=text,
            vision_config=vision,
            scale_factor=facts.scale,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )

    return make


def _split_image_processor(family: str) -> Callable[[TinySpec, Any], ProcessorMixin]:
    def make(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
        import transformers

        common = {
            "size": {"longest_edge": _SPLIT_IMAGE_TILES * spec.image_size},
            "max_image_size": {"longest_edge": spec.image_size},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
        facts = _SPLIT_IMAGE[family]
        image_processor = getattr(transformers, f"{facts.prefix}ImageProcessor")(do_image_splitting=True, **common)
        videos: dict[str, Any] = {}
        if family == "smolvlm":  # SmolVLM's processor also takes videos, frames sized like one tile
            videos["video_processor"] = transformers.SmolVLMVideoProcessor(
                size={"longest_edge": spec.image_size}, max_image_size={"longest_edge": spec.image_size}
            )
        return getattr(transformers, f"{facts.prefix}Processor")(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=facts.chat_template,
            image_seq_len=_split_image_seq_len(family, spec),
            **videos,
        )

    return make


def _idefics3_generation(tokenizer: Any) -> dict[str, Any]:
    return greedy_ids(tokenizer, "<end_of_utterance>", "<|end_of_text|>")


def _smolvlm_generation(tokenizer: Any) -> dict[str, Any]:
    return greedy_ids(tokenizer, "<end_of_utterance>")


def _split_image_builder(
    family: str,
    tokenizer: Callable[[TinySpec], PreTrainedTokenizerFast],
    generation: Callable[[Any], dict[str, Any]],
    expected: FamilyExpectations,
    image_size: int,
    **extra: Any,
) -> FamilyBuilder:
    facts = _SPLIT_IMAGE[family]
    return FamilyBuilder(
        tokenizer=tokenizer,
        config=_split_image_config(family),
        processor=_split_image_processor(family),
        generation=generation,
        model_class=f"{facts.prefix}ForConditionalGeneration",
        expected=expected,
        image_size=image_size,
        image_size_multiple=facts.patch * facts.scale,  # a tile is a whole number of shuffled tokens
        **extra,
    )


IDEFICS3 = _split_image_builder(
    "idefics3", _idefics3_tokenizer, _idefics3_generation, IDEFICS3_EXPECTED, image_size=112
)
SMOLVLM = _split_image_builder(
    "smolvlm", _smolvlm_tokenizer, _smolvlm_generation, SMOLVLM_EXPECTED, image_size=192, requirements=("num2words",)
)
