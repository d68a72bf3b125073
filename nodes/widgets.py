"""Inputs several nodes share, declared once, with choices and defaults read from the engine.

Also the one place that knows whether the server has ``io.DynamicCombo`` (ComfyUI 0.8+): a
:class:`ComboWithInputs` is a combo whose options bring their own inputs (``hub_id`` only for
``(use hub_id)``, ``custom_prompt`` only for prompt style ``custom``). :func:`node_schema` turns
it into a DynamicCombo where the server has one, and elsewhere into today's flat layout: the
combo in place and its dependent inputs, optional, after every other input (so a workflow
saved in a mode that does not use them loads on both layouts: widget values are restored by
position). :func:`plain_values` gives ``execute`` the same plain keyword arguments in both cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from comfy_api.latest import io

from ..vea_engine.config import DEFAULTS, PROMPT_STYLES, ROUNDING_MODES
from ..vea_engine.signals import SIGNALS

#: The server shows an option's own inputs only while that option is chosen (ComfyUI 0.8+).
HAS_DYNAMIC_COMBO = hasattr(io, "DynamicCombo")
#: The server has ComfyUI's core bounding-box socket (``BOUNDING_BOX``, ComfyUI 0.33+).
HAS_BOUNDING_BOX = hasattr(io, "BoundingBox")
#: The server can pass prompt inputs the schema does not declare (here: the flat layout's keys).
ACCEPTS_ALL_INPUTS = "accept_all_inputs" in getattr(io.Schema, "__dataclass_fields__", {})
#: Attribute of a flat-layout dependent input: ``(combo id, option keys that use it)``.
SHOWN_FOR = "vea_shown_for"

QUESTION_TIP = "The question about the image(s). One question is used for every image of the batch."
PER_LINE_TIP = "Read one question per non-empty line, one per image of the batch (in order)."


def question_input() -> io.String.Input:
    return io.String.Input("question", multiline=True, default="", tooltip=QUESTION_TIP)


def per_line_input() -> io.Boolean.Input:
    return io.Boolean.Input("question_per_line", default=False, tooltip=PER_LINE_TIP)


def _paper_float(name: str, low: float, high: float, step: float, what: str) -> io.Float.Input:
    paper = getattr(DEFAULTS, name)
    return io.Float.Input(name, default=paper, min=low, max=high, step=step, tooltip=f"{what} Paper: {paper:g}.")


def lam_input() -> io.Float.Input:
    return _paper_float(
        "lam",
        1.0,
        1000.0,
        0.5,
        "Denoise spike threshold: a token above lam x all 8 neighbours is "
        "replaced by their mean; larger replaces fewer tokens.",
    )


def sigma_input() -> io.Float.Input:
    return _paper_float(
        "sigma", 0.0, 4096.0, 0.05, "Gaussian smoothing: <= 1 a fraction of the shorter side, > 1 pixels, 0 off."
    )


def alpha_input() -> io.Float.Input:
    return _paper_float("alpha", 0.0, 1.0, 0.05, "Brightness kept where the evidence is 0 (1 = no change).")


def max_new_tokens_input() -> io.Int.Input:
    return io.Int.Input(
        "max_new_tokens",
        default=DEFAULTS.max_new_tokens,
        min=1,
        max=4096,
        tooltip=f"Greedy answer length limit in tokens. Paper: {DEFAULTS.max_new_tokens}.",
    )


def rounding_input() -> io.Combo.Input:
    return io.Combo.Input(
        "rounding",
        options=list(ROUNDING_MODES),
        default=ROUNDING_MODES[0],
        optional=True,
        tooltip="How highlighted pixels become 8-bit levels: truncate (the reference code's cast) or round (to "
        "the nearest level).",
    )


def prompt_style_input(styles: tuple[str, ...] = PROMPT_STYLES, default: str = "vea", tip: str = "") -> io.Combo.Input:
    unknown = set(styles) - set(PROMPT_STYLES)
    if unknown:
        raise ValueError(f"prompt styles {sorted(unknown)} are not engine prompt styles {PROMPT_STYLES}")
    return io.Combo.Input("prompt_style", options=list(styles), default=default, tooltip=tip)


# ---- combos whose options bring their own inputs ---------------------------------------------
@dataclass(frozen=True)
class ComboWithInputs:
    """A combo whose options bring their own inputs.

    Args:
        id: the combo's input name (also its key in API prompts, on every server).
        options: the choices, in the flat combo's order.
        default: the choice a new node starts with (listed first in the DynamicCombo).
        tooltip: the combo's tooltip.
        shows: option -> the inputs shown only while that option is chosen. An input used
            by several options is declared once (the same object) in each of them.
    """

    id: str
    options: tuple[str, ...]
    default: str
    tooltip: str
    shows: Mapping[str, tuple[io.Input, ...]]

    def __post_init__(self) -> None:
        if self.default not in self.options or set(self.shows) - set(self.options):
            raise ValueError(
                f"ComboWithInputs {self.id!r}: default {self.default!r} and the keys of shows "
                f"{sorted(self.shows)} must be among the options {self.options}"
            )
        for spec in self.dependents():  # a prompt that names only the choice runs with their defaults
            spec.optional = True

    def dependents(self) -> list[io.Input]:
        """Every input some option shows, once each, in order of first appearance."""
        seen: dict[str, io.Input] = {}
        for option in self.options:
            for spec in self.shows.get(option, ()):
                seen.setdefault(spec.id, spec)
        return list(seen.values())

    def dynamic(self) -> io.Input:
        """One ``io.DynamicCombo`` input, the default option first (the front end starts new nodes on
        the first option)."""
        keys = [self.default, *(o for o in self.options if o != self.default)]
        return io.DynamicCombo.Input(
            self.id,
            options=[io.DynamicCombo.Option(k, list(self.shows.get(k, ()))) for k in keys],
            tooltip=self.tooltip,
        )

    def flat(self) -> tuple[io.Input, list[io.Input]]:
        """The combo and its dependent inputs, each tagged with :data:`SHOWN_FOR`."""
        combo = io.Combo.Input(self.id, options=list(self.options), default=self.default, tooltip=self.tooltip)
        dependents = self.dependents()
        for spec in dependents:
            users = tuple(o for o in self.options if any(s is spec for s in self.shows.get(o, ())))
            setattr(spec, SHOWN_FOR, (self.id, users))
        return combo, dependents


def node_schema(*, inputs: Sequence[io.Input | ComboWithInputs], **fields: Any) -> io.Schema:
    """``io.Schema(**fields)`` with ``inputs`` laid out for this server (see the module docstring).

    With a DynamicCombo, the schema also accepts the flat layout's keys where the server allows
    it, so an API prompt written for ComfyUI 0.3.x (``"custom_prompt": ...``) runs unchanged.
    """
    laid_out, trailing, dynamic = [], [], False
    for item in inputs:
        if not isinstance(item, ComboWithInputs):
            laid_out.append(item)
        elif HAS_DYNAMIC_COMBO:
            laid_out.append(item.dynamic())
            dynamic = True
        else:
            combo, dependents = item.flat()
            laid_out.append(combo)
            trailing += dependents
    if dynamic and ACCEPTS_ALL_INPUTS:
        fields["accept_all_inputs"] = True
    return io.Schema(inputs=laid_out + trailing, **fields)


def dynamic_specs(spec: io.Input) -> list[io.Input]:
    """The inputs a DynamicCombo input ``spec`` shows in any option, once each; [] for other inputs."""
    if not (HAS_DYNAMIC_COMBO and isinstance(spec, io.DynamicCombo.Input)):
        return []
    seen: dict[str, io.Input] = {}
    for option in spec.options:
        for inner in option.inputs:
            seen.setdefault(inner.id, inner)
    return list(seen.values())


def chosen(value: Any, combo_id: str) -> Any:
    """The chosen option of combo ``combo_id`` from what the server passed: a DynamicCombo's
    ``{combo_id: option, <its inputs>...}`` or a plain value."""
    return value.get(combo_id) if isinstance(value, dict) else value


def plain_values(schema: io.Schema, values: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``execute`` receives, the same on every server.

    A DynamicCombo's nested ``{id: option, name: value}`` becomes ``id=option, name=value``; a
    dependent input missing from the prompt (its option is not chosen, or an API prompt names
    only the choice) takes the flat key if the prompt has one, else its default. Keys the
    schema does not declare (passed by ``accept_all_inputs``) are dropped.
    """
    out: dict[str, Any] = {}
    for spec in schema.inputs:
        inner = dynamic_specs(spec)
        if spec.id in values:
            out[spec.id] = chosen(values[spec.id], spec.id) if inner else values[spec.id]
        if inner:
            nested = values.get(spec.id) if isinstance(values.get(spec.id), dict) else {}
            for dep in inner:
                value = nested.get(dep.id)
                out[dep.id] = value if value is not None else values.get(dep.id, getattr(dep, "default", None))
        elif getattr(spec, SHOWN_FOR, None) and spec.id not in values:
            out[spec.id] = getattr(spec, "default", None)
    return out


# ---- inputs only some options use ------------------------------------------------------------
CUSTOM_PROMPT_DEFAULT = "Answer briefly. Question: {question}"


def custom_layers_input() -> io.String.Input:
    return io.String.Input(
        "custom_layers", default="", tooltip="0-based layer indices for 'custom', e.g. '14,15,17,19' or '14-19'."
    )


def prompt_style_with_template(tip: str) -> ComboWithInputs:
    """VEA Answer's prompt style; ``custom`` shows its template (``{question}`` is replaced by the question)."""
    template = io.String.Input(
        "custom_prompt",
        default=CUSTOM_PROMPT_DEFAULT,
        tooltip="Template for prompt 'custom'; {question} is replaced by the question.",
    )
    return ComboWithInputs("prompt_style", PROMPT_STYLES, "vea", tip, {"custom": (template,)})


SIGNAL_TIP = (
    "What scores the image tokens. 'attention' (the paper's): the last prompt token's attention, one forward "
    "pass. 'relatt' (ViCrop): that attention divided by the attention for 'Write a general description of the "
    "image.', both prompts in one batched pass; cancels what the model looks at whatever it is asked. 'grad': "
    "gradient x input of the image-token embeddings for the first answer token (its positive part), one forward "
    "+ backward pass with checkpointed layers; the layers input then only chooses where sinks are detected."
)
SINKS_TIP = (
    "Exclude visual attention sinks before normalising: image tokens whose hidden state has a massive "
    "activation (one dimension >= 20x the vector's RMS) in most selected layers get the mean score of the "
    "other tokens. Such tokens draw attention whatever the question. Off: the paper's behaviour."
)


def signal_inputs() -> list:
    """The optional signal and sink inputs (absent from older workflows: their defaults are the paper's)."""
    return [
        io.Combo.Input("signal", options=list(SIGNALS), default=SIGNALS[0], optional=True, tooltip=SIGNAL_TIP),
        io.Boolean.Input("sinks", default=False, optional=True, tooltip=SINKS_TIP),
    ]
