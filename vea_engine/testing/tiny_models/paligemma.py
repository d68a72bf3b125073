"""Tiny PaliGemma (1): a Gemma decoder with a prefix-LM mask over SigLIP patch features.

No chat template: the processor writes ``<image>*n <bos> {prompt}\\n`` itself. The
vocabulary includes PaliGemma's 1024 ``<locXXXX>`` and 128 ``<segXXX>`` tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import greedy_ids, siglip_vision, text_sizes
from .spec import FamilyBuilder, FamilyExpectations, TinySpec
from .tokenizer import make_tokenizer

if TYPE_CHECKING:  # heavy imports stay lazy
    from transformers import PreTrainedConfig, PreTrainedTokenizerFast, ProcessorMixin

__all__ = ["EXPECTED", "PALIGEMMA"]

EXPECTED = FamilyExpectations(
    chat=None,  # no chat template: the processor writes <image>*n <bos> {text}\n itself
    image_token="<image>",
    image_tokens={(200, 150): 36, (448, 448): 36},  # 84 px square, 14 px patches
)


def _paligemma_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    from transformers.models.paligemma.processing_paligemma import EXTRA_TOKENS

    # The processor writes ``<image>*n <bos> {prompt}\n`` itself, so the tokenizer adds no BOS; the
    # 1024 <locXXXX> and 128 <segXXX> tokens it would add at load time are part of the vocabulary already.
    tokenizer = make_tokenizer(
        unk="<unk>",
        leading=("<pad>", "<eos>", "<bos>", "<unk>"),
        trailing=("<image>",),
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        model_max_length=spec.max_position_embeddings,
        extra_special_tokens={"image_token": "<image>"},
        add_bos=False,
    )
    tokenizer.add_tokens(EXTRA_TOKENS)
    return tokenizer


def _paligemma_config(spec: TinySpec, tokenizer: Any) -> PreTrainedConfig:
    from transformers import PaliGemmaConfig

    text = {  # PaliGemma 1: a Gemma decoder (PaliGemma 2's Gemma 2 has no SDPA kernel: logit soft-capping)
        **text_sizes(spec, tokenizer),
        "model_type": "gemma",
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        "tie_word_embeddings": True,
    }
    return PaliGemmaConfig(
        vision_config=siglip_vision(spec, projection_dim=spec.hidden_size),
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        projection_dim=spec.hidden_size,
        hidden_size=spec.hidden_size,
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
    )


def _paligemma_processor(spec: TinySpec, tokenizer: Any) -> ProcessorMixin:
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    image_processor = SiglipImageProcessor(
        size={"height": spec.image_size, "width": spec.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        image_seq_length=(spec.image_size // 14) ** 2,
    )
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


PALIGEMMA = FamilyBuilder(
    tokenizer=_paligemma_tokenizer,
    config=_paligemma_config,
    processor=_paligemma_processor,
    generation=greedy_ids,
    model_class="PaliGemmaForConditionalGeneration",
    expected=EXPECTED,
    image_size=84,
)
