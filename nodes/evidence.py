"""VEA Evidence Boxes and VEA Zoom: the evidence as boxes and crops of the original, and a zoomed answer."""

from __future__ import annotations

from comfy_api.latest import io

from ..vea_engine.boxes import BOX_DEFAULTS, BOX_MODES
from ..vea_engine.zoom import ZOOM_DEFAULTS
from .bridge import ATTENTION_TYPE, VLM_TYPE, check_question, mask_batch, progress_callback, split_questions
from .checks import checked, validator
from .widgets import HAS_BOUNDING_BOX, lam_input, max_new_tokens_input, per_line_input, question_input

MASK_TIP = (
    "Evidence on the model's input image (connect its attention too) or on the original image (e.g. VEA Align "
    "Mask without answer_model). Leave it out to use the attention's denoised token scores (sharp edges)."
)
ATTENTION_TIP = (
    "From VEA Extract Attention: its token scores (denoised with lam, not smoothed) when no mask is connected; "
    "otherwise the geometry that carries a mask on the model's input image to the original."
)


# ComfyUI's core bounding boxes (0.33+): an extra output of Evidence Boxes and an extra input of Zoom, last so that
# slots and widget values of workflows saved without them stay where they are; absent on older servers.
CORE_BOXES_OUTPUT = (
    [
        io.BoundingBox.Output(
            "bboxes",
            display_name="bboxes",
            tooltip="The same boxes as ComfyUI bounding boxes, one list per image: {x, y, width, height, score}, "
            "original pixels, (x, y) the top-left corner; for Draw BBoxes, SAM 3, Crop By BBoxes.",
        )
    ]
    if HAS_BOUNDING_BOX
    else []
)
CORE_BOXES_INPUT = (
    [
        io.BoundingBox.Input(
            "bboxes",
            optional=True,
            force_input=True,
            tooltip="Zoom exactly here instead: per image, the smallest box holding all its boxes (original "
            "pixels; from VEA Evidence Boxes, a detector or Create Bounding Boxes). Mask, attention and scales "
            "are then not used.",
        )
    ]
    if HAS_BOUNDING_BOX
    else []
)


class VEAEvidenceBoxes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEAEvidenceBoxes",
            display_name="VEA Evidence Boxes",
            category="VEA/evidence",
            description="The evidence as boxes of the original image: connected regions above a threshold (a "
            "fraction of the max, or the top share of the evidence mass), as JSON, a mask, crops and a preview, "
            "and as ComfyUI bounding boxes where the server has them. Feed them to any node (detailer, SAM, "
            "upscaler).",
            is_output_node=True,
            inputs=[
                io.Image.Input("image", tooltip="The original images [B, H, W, C] the evidence was made for."),
                io.Mask.Input("mask", optional=True, tooltip=MASK_TIP),
                ATTENTION_TYPE.Input("attention", optional=True, tooltip=ATTENTION_TIP),
                io.Combo.Input(
                    "mode",
                    options=list(BOX_MODES),
                    default=BOX_DEFAULTS.mode,
                    tooltip="relative: keep pixels >= threshold x the max; mass: keep the strongest pixels that "
                    "hold the threshold's share of all the evidence (top-p).",
                ),
                io.Float.Input(
                    "threshold",
                    default=BOX_DEFAULTS.threshold,
                    min=0.01,
                    max=1.0,
                    step=0.01,
                    tooltip="Fraction of the max (relative) or share of the evidence mass (mass); higher gives "
                    "smaller, fewer boxes.",
                ),
                io.Float.Input(
                    "min_area",
                    default=BOX_DEFAULTS.min_area,
                    min=0.0,
                    max=0.5,
                    step=0.001,
                    tooltip="Drop regions smaller than this fraction of the image (the best region is always kept).",
                ),
                io.Int.Input(
                    "max_boxes", default=BOX_DEFAULTS.max_boxes, min=1, max=64, tooltip="At most this many per image."
                ),
                lam_input(),
            ],
            outputs=[
                io.String.Output(
                    "boxes",
                    display_name="boxes",
                    tooltip='JSON, one list per image: [{"box": [x0, y0, x1, y1], "score": s}], original pixels, '
                    "x1/y1 exclusive, best first; score = share of the evidence inside.",
                ),
                io.Mask.Output("boxes_mask", display_name="boxes_mask", tooltip="[B, H, W]: 1 inside the boxes."),
                io.Image.Output(
                    "crops",
                    display_name="crops",
                    is_output_list=True,
                    tooltip="The boxes cropped from the original, image by image, best first (sizes differ).",
                ),
                io.Image.Output("preview", display_name="preview", tooltip="The originals with the boxes drawn."),
                *CORE_BOXES_OUTPUT,
            ],
        )

    @classmethod
    @checked
    def execute(cls, image, mode, threshold, min_area, max_boxes, lam, mask=None, attention=None) -> io.NodeOutput:
        from ..vea_engine.boxes import box_evidence, core_boxes

        result = box_evidence(
            image,
            mask_batch(mask) if mask is not None else None,
            attention,
            lam,
            who="VEA Evidence Boxes",
            mode=mode,
            threshold=threshold,
            min_area=min_area,
            max_boxes=max_boxes,
        )
        text = result.to_json()
        core = [core_boxes(result.boxes)] if HAS_BOUNDING_BOX else []
        return io.NodeOutput(text, result.mask, result.crops, result.preview, *core, ui={"text": [text]})


class VEAZoom(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEAZoom",
            display_name="VEA Zoom",
            category="VEA/evidence",
            description="Attention-guided zoom (ViCrop-style): the window of the original holding the evidence "
            "(1x to 2x the model's input side, never more than 60% of the image's side: on a small image 30% to "
            "60% of it), cropped at full resolution, upscaled to the model's input side when smaller and answered "
            "together with the whole image (multi-image families) or alone (LLaVA-1.5, LLaVA-NeXT, PaliGemma). A "
            "bounding box, where the server has them, sets the window instead.",
            is_output_node=True,
            inputs=[
                VLM_TYPE.Input("model", tooltip="The model that answers; its input side sizes the window."),
                io.Image.Input("image", tooltip="The original images [B, H, W, C] the evidence was made for."),
                question_input(),
                per_line_input(),
                io.Mask.Input("mask", optional=True, tooltip=MASK_TIP),
                ATTENTION_TYPE.Input("attention", optional=True, tooltip=ATTENTION_TIP),
                io.Float.Input(
                    "min_scale",
                    default=ZOOM_DEFAULTS.min_scale,
                    min=0.1,
                    max=8.0,
                    step=0.05,
                    tooltip="Smallest window side, in model input sides (1 = seen at the model's native resolution); "
                    "on an image under about 3.3 input sides the unit shrinks so max_scale is 60% of the image.",
                ),
                io.Float.Input(
                    "max_scale",
                    default=ZOOM_DEFAULTS.max_scale,
                    min=0.1,
                    max=8.0,
                    step=0.05,
                    tooltip="Largest window side, in model input sides, at most 60% of the image's side; the "
                    "smallest size that holds the evidence is taken.",
                ),
                io.Float.Input(
                    "aspect",
                    default=ZOOM_DEFAULTS.aspect,
                    min=0.1,
                    max=10.0,
                    step=0.05,
                    tooltip="Window width / height; 1 (square) matches most models' inputs.",
                ),
                lam_input(),
                max_new_tokens_input(),
                *CORE_BOXES_INPUT,
            ],
            outputs=[
                io.String.Output(
                    "answer", display_name="answer", is_output_list=True, tooltip="One answer per image, in order."
                ),
                io.Image.Output(
                    "crop",
                    display_name="crop",
                    is_output_list=True,
                    tooltip="The zoomed-in crop of each image, full resolution (sizes may differ).",
                ),
                io.String.Output(
                    "window",
                    display_name="window",
                    tooltip='JSON, one per image: {"box": [x0, y0, x1, y1], "score": s}, original pixels, '
                    "x1/y1 exclusive; score = share of the evidence inside (null for a given box).",
                ),
            ],
        )

    @classmethod
    @validator
    def validate_inputs(cls, question=None) -> bool | str:
        return check_question("VEA Zoom", question)

    @classmethod
    @checked
    def execute(
        cls,
        model,
        image,
        question,
        question_per_line,
        min_scale,
        max_scale,
        aspect,
        lam,
        max_new_tokens,
        mask=None,
        attention=None,
        bboxes=None,
    ) -> io.NodeOutput:
        from ..vea_engine.boxes import core_regions, evidence_source
        from ..vea_engine.zoom import zoom_answer

        if min_scale > max_scale:
            raise ValueError(f"VEA Zoom: min_scale {min_scale} is above max_scale {max_scale}; swap them.")
        evidence, frame, windows = None, None, None
        if bboxes is not None:  # the region is given: mask, attention and scales are not used
            windows = core_regions(bboxes, image.shape[0], tuple(image.shape[1:3]), "VEA Zoom: bboxes")
        else:
            evidence, frame = evidence_source(
                image, mask_batch(mask) if mask is not None else None, attention, lam, "VEA Zoom"
            )
        result = zoom_answer(
            model.ready_for("VEA Zoom", image),
            image,
            split_questions(question, question_per_line),
            evidence,
            frame,
            min_scale,
            max_scale,
            aspect,
            max_new_tokens=max_new_tokens,
            progress=progress_callback(max_new_tokens),
            windows=windows,
        )
        text = result.windows_json()
        return io.NodeOutput(result.answers, result.crop_images(), text, ui={"text": [*result.answers, text]})
