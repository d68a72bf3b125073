"""VEA Answer and the all-in-one VEA node."""

from __future__ import annotations

from comfy_api.latest import io

from .attention import PER_LINE_TIP, QUESTION_TIP
from .bridge import VLM_TYPE, check_question, progress_callback, split_questions

MAX_TOKENS_TIP = "Greedy answer length limit in tokens. Paper: 50."


class VEAAnswer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEAAnswer",
            display_name="VEA Answer",
            category="VEA/answer",
            description="Greedy answer for each image of the batch (paper step 6). Use prompt 'vea' on a "
            "highlighted image, 'qa' on the original for the baseline.",
            is_output_node=True,
            inputs=[
                VLM_TYPE.Input("model", tooltip="The model that answers."),
                io.Image.Input("image", tooltip="Images [B, H, W, C] to answer about (e.g. from VEA Blend)."),
                io.String.Input("question", multiline=True, default="", tooltip=QUESTION_TIP),
                io.Boolean.Input("question_per_line", default=False, tooltip=PER_LINE_TIP),
                io.Combo.Input(
                    "prompt_style",
                    options=["vea", "qa", "custom"],
                    default="vea",
                    tooltip="vea: answer from the highlighted region (paper); qa: plain; custom: the template.",
                ),
                io.String.Input(
                    "custom_prompt",
                    default="Answer briefly. Question: {question}",
                    tooltip="Template for prompt 'custom'; {question} is replaced by the question.",
                ),
                io.Int.Input("max_new_tokens", default=50, min=1, max=4096, tooltip=MAX_TOKENS_TIP),
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
    def validate_inputs(cls, question=None, prompt_style="vea", custom_prompt="") -> bool | str:
        if prompt_style == "custom" and "{question}" not in (custom_prompt or ""):
            return "VEA Answer: prompt is 'custom' but custom_prompt has no '{question}' placeholder."
        return check_question("VEA Answer", question)

    @classmethod
    def execute(cls, model, image, question, question_per_line, prompt_style, custom_prompt, max_new_tokens):
        from ..vea_engine.answering import answer

        answers = answer(
            model.ready(),
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
        return io.Schema(
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
                io.String.Input("question", multiline=True, default="", tooltip=QUESTION_TIP),
                io.Boolean.Input("question_per_line", default=False, tooltip=PER_LINE_TIP),
                io.Combo.Input(
                    "layers",
                    options=["preset", "deepest_half", "all", "custom"],
                    default="preset",
                    tooltip="Which decoder layers to read (see VEA Layers).",
                ),
                io.String.Input("custom_layers", default="", tooltip="Indices for layers 'custom', e.g. '14,15,17'."),
                io.Float.Input(
                    "lam", default=10.0, min=1.0, max=1000.0, step=0.5, tooltip="Denoise threshold. Paper: 10."
                ),
                io.Float.Input(
                    "sigma",
                    default=0.5,
                    min=0.0,
                    max=4096.0,
                    step=0.05,
                    tooltip="Smoothing: <= 1 relative to the shorter side, > 1 pixels, 0 off. Paper: 0.5.",
                ),
                io.Float.Input(
                    "alpha",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Brightness kept outside the evidence. Paper: 0.5.",
                ),
                io.Int.Input("max_new_tokens", default=50, min=1, max=4096, tooltip=MAX_TOKENS_TIP),
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
            ],
        )

    @classmethod
    def validate_inputs(cls, question=None) -> bool | str:
        return check_question("VEA (all-in-one)", question)

    @classmethod
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
        delegate=None,
    ) -> io.NodeOutput:
        from ..vea_engine.layers import select_layers
        from ..vea_engine.pipeline import run_vea

        vlm = model.ready()
        mask_vlm = delegate.ready() if delegate is not None else None
        selection = select_layers(layers, (mask_vlm or vlm).num_layers, (mask_vlm or vlm).name, custom=custom_layers)
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
        )
        vea, base = result.answers["vea"], result.answers["base"]
        return io.NodeOutput(vea, base, result.highlighted, result.evidence, ui={"text": [*vea, *base]})
