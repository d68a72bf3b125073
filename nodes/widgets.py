"""Inputs several nodes share, declared once, with choices and defaults read from the engine."""

from __future__ import annotations

from comfy_api.latest import io

from ..vea_engine.config import DEFAULTS, PROMPT_STYLES, ROUNDING_MODES

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
