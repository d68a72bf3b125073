"""The one table of what each method does, and the runner that executes it.

A :class:`Method` says which prompt the answer gets, whether the image is
highlighted and, if so, how the evidence map is made (which layers, with or
without denoising and smoothing). :data:`METHODS` holds the paper's comparison
(``base``, ``inst``, ``vea``) and its ablations; :func:`vea_engine.pipeline.run_vea`,
the evaluation, the CLI and the ComfyUI nodes all execute it through
:class:`MethodRunner`, which computes each attribution, evidence map and
highlighted image once per batch and shares them between methods. Each method's answers
are decoded on their own, as the reference code decodes them; with ``joint_decode`` (an
opt-in), :meth:`MethodRunner.answers` prefills each method's answers on its own and decodes
them :data:`JOINT_METHODS` methods at a time as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .align import align_mask
from .answering import Prefilled, answer, answer_inputs, decode_answers, prefill_answers
from .attribution import AttentionMap, attention_and_prefill, evidence_map
from .boxes import token_map
from .config import DEFAULTS
from .images import images_to_uint8, to_levels
from .inputs import Progress, broadcast_questions
from .layers import LayerSelection, for_model
from .loading import VLM
from .mask import highlight_uint8
from .signals import attribute
from .zoom import answer_zoomed, crop_windows, evidence_on_original, zoom_windows


@dataclass(frozen=True)
class Method:
    """One row of the comparison.

    Attributes:
        name: its name in results and tables.
        prompt: the answer's prompt style, ``qa`` or ``vea`` (with the highlight hint).
        layers: ``None`` (no attribution: the original image is answered),
            ``selected`` (the chosen layers) or ``all`` (every layer: no profiling).
        denoise, smooth: evidence-map stages (ablations switch them off).
        signal: how the image tokens are scored, one of :data:`~vea_engine.signals.SIGNALS`
            (``attention``: the paper's).
        highlight: the answer is given the highlighted image (else the original).
        zoom: the answer is also given the window of highest evidence, cropped from the original
            at full resolution (:mod:`vea_engine.zoom`; multi-image families see both images).
        description: one line for tables and docs.
    """

    name: str
    prompt: str
    layers: str | None = None
    denoise: bool = True
    smooth: bool = True
    signal: str = "attention"
    highlight: bool = False
    zoom: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if (self.highlight or self.zoom) and self.layers is None:
            raise ValueError(f"method {self.name!r}: highlighting or zooming needs an attribution (layers).")


#: Every method, in canonical (output and table) order.
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("base", "qa", description="plain QA prompt, original image"),
        Method("inst", "vea", description="VEA prompt (highlight hint), original image"),
        Method("vea", "vea", "selected", highlight=True, description="VEA prompt, highlighted image (the method)"),
        Method("vea_no_denoise", "vea", "selected", denoise=False, highlight=True, description="VEA without denoising"),
        Method("vea_no_smooth", "vea", "selected", smooth=False, highlight=True, description="VEA without smoothing"),
        Method("vea_all_layers", "vea", "all", highlight=True, description="VEA averaging every layer (no profiling)"),
        Method("vea_no_hint", "qa", "selected", highlight=True, description="highlighted image, plain QA prompt"),
        Method(
            "relatt",
            "vea",
            "selected",
            signal="relatt",
            highlight=True,
            description="VEA on relative attention (ViCrop)",
        ),
        Method("grad", "vea", "selected", signal="grad", highlight=True, description="VEA on gradient x input"),
        Method("zoom", "qa", "selected", zoom=True, description="original + zoomed evidence window (ViCrop-style)"),
        Method(
            "vea_zoom",
            "vea",
            "selected",
            highlight=True,
            zoom=True,
            description="highlighted image + zoomed evidence window",
        ),
    )
}


#: How many methods' answers :meth:`MethodRunner.answers` decodes as one batch: a decoding step of
#: two sequences costs little more than one of a single sequence (the weights are read once),
#: and the two caches are at most twice the memory of one answer's.
JOINT_METHODS = 2


def check_methods(methods: Sequence[str] | str, who: str = "methods") -> tuple[Method, ...]:
    """Validated, de-duplicated methods by name (a ``"base,inst,vea"`` string is split on commas)."""
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    names = list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(
            f"{who}: methods must be a non-empty subset of {list(METHODS)}, got {names}; e.g. 'base,inst,vea'."
        )
    return tuple(METHODS[m] for m in dict.fromkeys(names))


class MethodRunner:
    """Answers one batch of same-size images under any methods, sharing the work between them.

    Args:
        vlm: the model that answers.
        images: ``[B, H, W, C]`` in [0, 1] or a list of same-size images.
        questions: one question, or one per image.
        selection: the layers of ``selected`` methods: a :class:`LayerSelection`, indices, a
            mode or None (preset, else all layers), checked once against ``mask_model``.
        lam, sigma, alpha: paper hyper-parameters (denoise, smooth, highlight).
        max_new_tokens: answer length.
        mask_model: the model whose attention makes the mask (a delegate); default ``vlm``.
        progress: called per decoder layer and per generated token; may raise to cancel.
        rounding: how canvases and highlighted images become uint8 (``truncate``: the reference).
        methods: the methods that will be asked for (default: any). Knowing them lets every
            attribution come from one pass (the union of their layer sets) and, when ``base`` is
            among them and the answering model makes the mask, lets that pass be the base
            answer's prefill (:func:`~vea_engine.attribution.attention_and_prefill`).
        sinks: exclude visual attention sinks from every attribution (:func:`~vea_engine.signals.attribute`).
        joint_decode: :meth:`answers` decodes :data:`JOINT_METHODS` methods at a time as one batch
            (an opt-in; the default answers each method alone, exactly as a plain answer and as the
            reference code does; see :mod:`vea_engine.answering`).

    :meth:`answer` answers one method; :meth:`answers` answers several.
    """

    def __init__(
        self,
        vlm: VLM,
        images: Any,
        questions: str | Sequence[str],
        selection: LayerSelection | Sequence[int] | str | None,
        lam: float = DEFAULTS.lam,
        sigma: float = DEFAULTS.sigma,
        alpha: float = DEFAULTS.alpha,
        max_new_tokens: int = DEFAULTS.max_new_tokens,
        mask_model: VLM | None = None,
        progress: Progress | None = None,
        rounding: str = "truncate",
        methods: Sequence[Method] | None = None,
        sinks: bool = False,
        joint_decode: bool = False,
    ) -> None:
        self.vlm, self.mask_model = vlm, mask_model or vlm
        self.joint_decode = joint_decode
        self.images = images_to_uint8(images)  # [H, W, 3] uint8 each: what every method starts from
        self.questions = broadcast_questions(questions, len(self.images))
        kinds = self.mask_model.layer_kinds
        self.selection = for_model(selection, kinds, self.mask_model.name)
        self.layer_sets = {"selected": self.selection.layers, "all": kinds.attention}  # every softmax layer
        self.lam, self.sigma, self.alpha, self.max_new_tokens = lam, sigma, alpha, max_new_tokens
        self.progress, self.rounding = progress, rounding
        self.expected = tuple(methods or ())
        self.sinks = sinks
        self._attention: dict[str, AttentionMap] = {}
        self._answers: dict[str, list[str]] = {}
        self._base_prefill: Prefilled | None = None  # the base answer after the attribution pass, not yet decoded
        self._crops: dict[tuple[str, str], list] = {}
        self._highlighted: dict[tuple[str, str, bool, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def attention(self, layers: str, signal: str = "attention") -> AttentionMap:
        """The attribution over layer set ``layers`` (``selected`` / ``all``) by ``signal``, computed once.

        The first ``attention`` call attributes every layer set the expected methods need in one pass;
        it is the base answer's prefill when ``base`` is expected and the answering model makes the mask.
        """
        key = layers if signal == "attention" else f"{signal}:{layers}"
        if key in self._attention:
            return self._attention[key]
        if signal != "attention" or self.sinks:
            self._attention[key] = attribute(self.mask_model, self.images, self.questions, self.layer_sets[layers],
                                             signal=signal, sinks=self.sinks, progress=self.progress,
                                             rounding=self.rounding)  # fmt: skip
            return self._attention[key]
        wanted = {m.layers for m in self.expected if m.layers is not None and m.signal == "attention"}
        reuse = (
            self.mask_model is self.vlm
            and METHODS["base"] in self.expected
            and "base" not in self._answers
            and self._base_prefill is None
        )
        maps, base = attention_and_prefill(
            self.mask_model,
            self.images,
            self.questions,
            {name: self.layer_sets[name] for name in sorted(wanted | {layers}) if name not in self._attention},
            base_answer_tokens=self.max_new_tokens if reuse else None,
            progress=self.progress,
            rounding=self.rounding,
        )
        self._attention.update(maps)
        if base is not None:
            self._base_prefill = base
        return self._attention[key]

    def highlighted(self, method: Method) -> tuple[torch.Tensor, torch.Tensor]:
        """``(evidence [B, H, W] float32, highlighted [B, H, W, 3] uint8)`` on the answering model's canvas."""
        key = (method.signal, method.layers, method.denoise, method.smooth)
        if key not in self._highlighted:
            attention = self.attention(method.layers, method.signal)
            if self.mask_model is self.vlm:  # mask stages on the model's device (a GPU), only the results come back
                attention = attention.to(self.vlm.device)
            evidence = evidence_map(attention, self.lam, self.sigma, method.denoise, method.smooth)  # [B, h, w]
            levels = attention.canvas_uint8  # [B, h, w, 3] uint8
            if self.mask_model is not self.vlm:
                evidence, canvas = align_mask(
                    evidence, attention.geometry.frame, self.images, self.vlm, rounding=self.rounding
                )
                levels = to_levels(canvas)  # the answering model's canvas: exact uint8 levels / 255
            highlighted = highlight_uint8(levels, evidence, self.alpha, self.rounding)  # [B, h, w, 3] uint8
            self._highlighted[key] = evidence.cpu(), highlighted.cpu()
        return self._highlighted[key]

    def answer(self, method: Method) -> list[str]:
        """One answer per image under ``method`` (the base answer may come with the attribution pass)."""
        base = self._base_answer_prefill(method)
        if base is not None:
            self._answers["base"] = decode_answers(self.vlm, [base], self.progress)[0]
        if method.name == "base" and "base" in self._answers:
            return self._answers["base"]
        images = self.highlighted(method)[1] if method.highlight else self.images
        if method.zoom:
            # single-image families answer on the crop alone, which is not highlighted: the plain prompt
            prompt = method.prompt if self.vlm.adapter.multi_image else "qa"
            crops = self.crops(method.layers, method.signal)
            return answer_zoomed(self.vlm, images, crops, self.questions, prompt, self.max_new_tokens, self.progress)
        return answer(
            self.vlm, images, self.questions, method.prompt, max_new_tokens=self.max_new_tokens, progress=self.progress
        )

    def answers(self, methods: Sequence[Method]) -> dict[str, list[str]]:
        """``{name: one answer per image}`` for several methods: :meth:`answer` of each, in order.

        With ``joint_decode`` (an opt-in), each method's answers are prefilled on their own (the
        base answer's prefill may be the attribution pass), then decoded :data:`JOINT_METHODS`
        methods at a time as one batch (:func:`~vea_engine.answering.decode_answers`); zoom
        methods, which answer on two images, and images of mixed sizes are still answered one
        method at a time.
        """
        if not self.joint_decode:
            return {method.name: self.answer(method) for method in methods}
        answers: dict[str, list[str]] = {}
        waiting: list[tuple[str, Prefilled]] = []

        def decode() -> None:
            for (name, _), texts in zip(waiting, decode_answers(self.vlm, [p for _, p in waiting], self.progress),
                                        strict=True):  # fmt: skip
                answers[name] = texts
                if name == "base":
                    self._answers["base"] = texts
            waiting.clear()

        for method in methods:
            prefilled = None if method.name in self._answers else self._prefill(method)
            if prefilled is None:
                answers[method.name] = self.answer(method)
                continue
            waiting.append((method.name, prefilled))
            if len(waiting) == JOINT_METHODS:
                decode()
        decode()
        return {method.name: answers[method.name] for method in methods}

    def _base_answer_prefill(self, method: Method) -> Prefilled | None:
        """The base answer's prefill when it comes with the attribution pass (taken: decode it next), else None."""
        if method.name != "base" or "base" in self._answers or self.mask_model is not self.vlm:
            return None
        attributed = [m.layers for m in self.expected if m.layers is not None and m.signal == "attention"]
        if attributed and self._base_prefill is None:  # the attribution pass these methods need anyway
            self.attention(attributed[0])
        prefilled, self._base_prefill = self._base_prefill, None
        return prefilled

    def _prefill(self, method: Method) -> Prefilled | None:
        """``method``'s answers after their prefill, or None where they are answered whole (zoom, mixed sizes)."""
        base = self._base_answer_prefill(method)
        if base is not None or method.zoom:
            return base
        images = self.highlighted(method)[1] if method.highlight else self.images  # [B, H, W, 3] or B x [H, W, 3]
        if len({tuple(image.shape) for image in images}) != 1:
            return None
        ((_, inputs),) = answer_inputs(
            self.vlm, images, self.questions, method.prompt, max_new_tokens=self.max_new_tokens
        )
        return prefill_answers(self.vlm, inputs, self.max_new_tokens, self.progress)

    def crops(self, layers: str, signal: str = "attention") -> list:
        """The window of highest evidence of each image, cropped from the original: ``[h, w, 3]`` uint8 each.

        Windows are found on the sharp evidence map (denoised token scores, not smoothed:
        :func:`~vea_engine.boxes.token_map`) carried to the original, sized by the answering model's input side.
        """
        key = (signal, layers)
        if key not in self._crops:
            attention = self.attention(layers, signal)
            evidence = evidence_on_original(token_map(attention, self.lam), attention.geometry.frame)  # [B, H0, W0]
            self._crops[key] = crop_windows(self.images, zoom_windows(evidence, self.vlm.adapter.input_side))
        return self._crops[key]
