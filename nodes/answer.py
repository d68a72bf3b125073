"""VEA Answer and the all-in-one VEA node."""

from __future__ import annotations

from comfy_api.latest import io

from ..vea_engine.layers import LAYER_MODES
from .bridge import VLM_TYPE, check_question, progress_callback, split_questions
from .checks import checked, validator
from .widgets import (
    ComboWithInputs,
    alpha_input,
    custom_layers_input,
    lam_input,
    max_new_tokens_input,
    node_schema,
    per_line_input,
    prompt_style_with_template,
    question_input,
    sigma_input,
    signal_inputs,
)


class VEAAnswer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="VEAAnswer",
            display_name="VEA Answer",
            category="VEA/answer",
            description="Greedy answer for each image of the batch (paper step 6). Use prompt 'vea' on a "
            "highlighted image, 'qa' on the original for the baseline.",
            is_output_node=True,
            inputs=[
                VLM_TYPE.Input("model", tooltip="The model that answers."),
                io.Image.Input("image", tooltip="Images [B, H, W, C] to answer about (e.g. from VEA Blend)."),
                question_input(),
                per_line_input(),
                prompt_style_with_template(
                    "vea: answer from the highlighted region (paper); qa: plain; custom: your template."
                ),
                max_new_tokens_input(),
            ],
            outputs=[
                io.String.Output(
                    "answer",
                    display_name="answer",
                    is_output_list=True,
                    tooltip="One answer per image, always a list (in batch order).",
                ),
            ],
        )

    @classmethod
    @validator
    def validate_inputs(cls, question=None) -> bool | str:  # one input: ComfyUI repeats a message per input
        return check_question("VEA Answer", question)

    @classmethod
    @checked
    def execute(cls, model, image, question, question_per_line, prompt_style, custom_prompt, max_new_tokens):
        from ..vea_engine.answering import answer

        if prompt_style == "custom" and "{question}" not in (custom_prompt or ""):
            raise ValueError(
                "VEA Answer: prompt_style is 'custom' but custom_prompt has no '{question}' placeholder; "
                "write e.g. 'Answer briefly. Question: {question}'."
            )
        answers = answer(
            model.ready_for("VEA Answer", image),
            image,
            split_questions(question, question_per_line),
            prompt_style,
            custom_prompt,
            max_new_tokens=max_new_tokens,
            progress=progress_callback(max_new_tokens),
        )
        return io.NodeOutput(answers, ui={"text": answers})


class VEAAllInOne(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="VEAAllInOne",
            display_name="VEA (all-in-one)",
            category="VEA",
            description="The whole method in one node: attention -> denoise -> smooth -> normalise -> highlight "
            "-> answer, plus the baseline answer. Same engine calls as the separate nodes.",
            is_output_node=True,
            inputs=[
                VLM_TYPE.Input(
                    "model", tooltip="The model that answers (and makes the mask unless a delegate is set)."
                ),
                io.Image.Input("image", tooltip="Image batch [B, H, W, C]; images of one batch share a size."),
                question_input(),
                per_line_input(),
                ComboWithInputs(
                    "layers",
                    options=LAYER_MODES,
                    default="preset",
                    tooltip="Which decoder layers to read (see VEA Layers); custom: your own list.",
                    shows={"custom": (custom_layers_input(),)},
                ),
                lam_input(),
                sigma_input(),
                alpha_input(),
                max_new_tokens_input(),
                *signal_inputs(),
                VLM_TYPE.Input(
                    "delegate",
                    optional=True,
                    tooltip="Optional second model that makes the mask for 'model' (delegate).",
                ),
            ],
            outputs=[
                io.String.Output(
                    "vea_answer",
                    display_name="vea_answer",
                    is_output_list=True,
                    tooltip="Answers on the highlighted images.",
                ),
                io.String.Output(
                    "base_answer",
                    display_name="base_answer",
                    is_output_list=True,
                    tooltip="Baseline answers on the originals.",
                ),
                io.Image.Output(
                    "highlighted",
                    display_name="highlighted",
                    tooltip="The highlighted images the VEA answers were given on.",
                ),
                io.Mask.Output(
                    "mask",
                    display_name="mask",
                    tooltip="Evidence maps [B, H, W] in [0, 1], aligned with 'highlighted'.",
                ),
                io.String.Output(
                    "layers_used",
                    display_name="layers_used",
                    tooltip="The decoder layers whose attention made the mask, and where they came from.",
                ),
            ],
        )

    @classmethod
    @validator
    def validate_inputs(cls, question=None) -> bool | str:
        return check_question("VEA (all-in-one)", question)

    @classmethod
    @checked
    def execute(
        cls,
        model,
        image,
        question,
        question_per_line,
        layers,
        custom_layers,
        lam,
        sigma,
        alpha,
        max_new_tokens,
        signal="attention",
        sinks=False,
        delegate=None,
    ) -> io.NodeOutput:
        from ..vea_engine.layers import describe_layers, select_layers
        from ..vea_engine.pipeline import run_vea

        vlm = model.ready_for("VEA (all-in-one)", image)
        mask_vlm = delegate.ready_for("VEA (all-in-one) (delegate)", image) if delegate is not None else None
        reader = mask_vlm or vlm
        selection = select_layers(layers, reader.layer_kinds, reader.name, custom=custom_layers)
        result = run_vea(
            vlm,
            image,
            split_questions(question, question_per_line),
            selection,
            lam,
            sigma,
            alpha,
            max_new_tokens,
            delegate=mask_vlm,
            progress=progress_callback(),
            signal=signal,
            sinks=bool(sinks),
        )
        vea, base = result.answers["vea"], result.answers["base"]
        used = describe_layers(result.layers)
        return io.NodeOutput(vea, base, result.highlighted, result.evidence, used, ui={"text": [*vea, *base, used]})
