"""VEA Extract Attention and the mask stages: Denoise, Smooth, Normalize, Align Mask, Blend."""

from __future__ import annotations

from comfy_api.latest import io

from .bridge import (
    ATTENTION_TYPE,
    LAYERS_TYPE,
    VLM_TYPE,
    check_question,
    mask_batch,
    progress_callback,
    split_questions,
)
from .checks import checked, validator
from .widgets import (
    alpha_input,
    lam_input,
    per_line_input,
    prompt_style_input,
    question_input,
    rounding_input,
    sigma_input,
    signal_inputs,
)

PROMPT_TIP = "Prompt of the attribution pass: 'qa' (the paper's) or 'vea' (with the highlight hint)."


class VEAExtractAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEAExtractAttention",
            display_name="VEA Extract Attention",
            category="VEA/attribution",
            description="One forward pass: the last prompt token's attention over the image tokens, averaged over "
            "heads and the selected layers (captured on SDPA, no eager attention). Optionally another signal "
            "(relative attention, gradient x input) and attention-sink exclusion. Also returns the image as the "
            "model sees it (resized/cropped), on which the mask is aligned.",
            inputs=[
                VLM_TYPE.Input("model", tooltip="The model whose attention makes the mask."),
                io.Image.Input("image", tooltip="Image batch [B, H, W, C]; images of one batch share a size."),
                question_input(),
                LAYERS_TYPE.Input("layers", tooltip="Decoder layers to average (from VEA Layers)."),
                per_line_input(),
                prompt_style_input(("qa", "vea"), "qa", PROMPT_TIP),
                *signal_inputs(),
            ],
            outputs=[
                ATTENTION_TYPE.Output(
                    "attention",
                    display_name="attention",
                    tooltip="Token scores (of the chosen signal), token grid and model-input geometry.",
                ),
                io.Image.Output(
                    "heatmap", display_name="heatmap", tooltip="Raw token scores over the model-input image (preview)."
                ),
                io.Image.Output(
                    "model_image",
                    display_name="model_image",
                    tooltip="The model-input rendering [B, H, W, 3]; masks align with it.",
                ),
            ],
        )

    @classmethod
    @validator
    def validate_inputs(cls, question=None) -> bool | str:  # one input: ComfyUI repeats a message per input
        return check_question("VEA Extract Attention", question)

    @classmethod
    @checked
    def execute(
        cls, model, image, question, layers, question_per_line, prompt_style, signal="attention", sinks=False
    ) -> io.NodeOutput:
        from ..vea_engine.attribution import attention_preview
        from ..vea_engine.layers import for_model
        from ..vea_engine.signals import attribute

        vlm = model.ready_for("VEA Extract Attention", image)
        attention = attribute(
            vlm,
            image,
            split_questions(question, question_per_line),
            for_model(layers, vlm.layer_kinds, who="VEA Extract Attention (layers)"),
            signal=signal,
            sinks=bool(sinks),
            prompt_style=prompt_style,
            progress=progress_callback(),
        )
        return io.NodeOutput(attention, attention_preview(attention), attention.canvas)


class VEADenoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEADenoise",
            display_name="VEA Denoise",
            category="VEA/mask",
            description="Replace isolated attention spikes (a token more than lam times all its 8 neighbours) by "
            "the mean of its neighbours, on the token grid (paper step 3).",
            inputs=[
                ATTENTION_TYPE.Input("attention", tooltip="Token scores from VEA Extract Attention."),
                lam_input(),
            ],
            outputs=[ATTENTION_TYPE.Output("denoised", display_name="denoised", tooltip="Denoised token scores.")],
        )

    @classmethod
    @checked
    def execute(cls, attention, lam) -> io.NodeOutput:
        from ..vea_engine.attribution import denoise_scores

        return io.NodeOutput(denoise_scores(attention, lam))


class VEASmooth(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEASmooth",
            display_name="VEA Smooth",
            category="VEA/mask",
            description="Paint token scores onto the model-input image (each token fills its patch) and blur with "
            "a Gaussian (paper step 4). Also smooths any MASK.",
            inputs=[
                ATTENTION_TYPE.Input("attention", optional=True, tooltip="Token scores to paint and smooth."),
                io.Mask.Input("mask", optional=True, tooltip="Or a MASK [B, H, W] to smooth instead."),
                sigma_input(),
            ],
            outputs=[
                io.Mask.Output(
                    "smoothed", display_name="smoothed", tooltip="Smoothed map [B, H, W] (not yet normalised)."
                )
            ],
        )

    @classmethod
    @checked
    def execute(cls, sigma, attention=None, mask=None) -> io.NodeOutput:
        from ..vea_engine.attribution import paint_scores
        from ..vea_engine.mask import gaussian_smooth

        if (attention is None) == (mask is None):
            raise ValueError("VEA Smooth: connect exactly one of 'attention' or 'mask'.")
        return io.NodeOutput(gaussian_smooth(paint_scores(attention) if mask is None else mask_batch(mask), sigma))


class VEANormalize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEANormalize",
            display_name="VEA Normalize",
            category="VEA/mask",
            description="Min-max rescale each mask of the batch to [0, 1]; a constant mask becomes 0.",
            inputs=[io.Mask.Input("mask", tooltip="Map [B, H, W] from VEA Smooth (any range).")],
            outputs=[
                io.Mask.Output("normalized", display_name="normalized", tooltip="Evidence map [B, H, W] in [0, 1].")
            ],
        )

    @classmethod
    @checked
    def execute(cls, mask) -> io.NodeOutput:
        from ..vea_engine.mask import minmax_normalize

        return io.NodeOutput(minmax_normalize(mask_batch(mask)))


class VEAAlignMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEAAlignMask",
            display_name="VEA Align Mask",
            category="VEA/mask",
            description="Carry a mask made on one model's input image to the image another model answers "
            "(delegate), or back to the original image: undoes the mask model's resize/crop.",
            inputs=[
                io.Mask.Input("mask", tooltip="Mask on the mask model's input image."),
                ATTENTION_TYPE.Input("attention", tooltip="The attention the mask was made from (its geometry)."),
                io.Image.Input("image", tooltip="The original images given to the mask model."),
                VLM_TYPE.Input(
                    "answer_model",
                    optional=True,
                    tooltip="The model that will answer; without it the mask is aligned to the originals.",
                ),
                io.Float.Input(
                    "fill",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="Mask value where the mask model saw nothing (cropped away).",
                ),
            ],
            outputs=[
                io.Mask.Output(
                    "aligned_mask", display_name="aligned_mask", tooltip="The mask aligned with the image output."
                ),
                io.Image.Output(
                    "aligned_image",
                    display_name="aligned_image",
                    tooltip="The answering model's input rendering (or the originals).",
                ),
            ],
        )

    @classmethod
    @checked
    def execute(cls, mask, attention, image, fill, answer_model=None) -> io.NodeOutput:
        from ..vea_engine.inputs import check_image_sizes
        from ..vea_engine.pipeline import align_mask

        target = answer_model.vlm if answer_model is not None else None
        if target is not None:
            check_image_sizes(target.adapter, [image], "VEA Align Mask: image")
        return io.NodeOutput(*align_mask(mask_batch(mask), attention.geometry.frame, image, target, fill))


class VEABlend(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEABlend",
            display_name="VEA Blend",
            category="VEA/mask",
            description="Highlight the evidence: out = image * (alpha + (1 - alpha) * mask), so non-evidence is "
            "dimmed and nothing is coloured (paper step 5), on 8-bit levels as the reference code does. Works on "
            "any IMAGE and MASK of the same size.",
            inputs=[
                io.Image.Input("image", tooltip="Images [B, H, W, C] the mask is aligned with."),
                io.Mask.Input("mask", tooltip="Evidence [B, H, W] or [1, H, W] in [0, 1]."),
                alpha_input(),
                rounding_input(),
            ],
            outputs=[io.Image.Output("highlighted", display_name="highlighted", tooltip="The highlighted images.")],
        )

    @classmethod
    @checked
    def execute(cls, image, mask, alpha, rounding: str = "truncate") -> io.NodeOutput:
        from ..vea_engine.images import to_levels
        from ..vea_engine.mask import highlight_uint8

        return io.NodeOutput(highlight_uint8(to_levels(image), mask_batch(mask), alpha, rounding).float() / 255.0)
