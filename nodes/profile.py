"""VEA Profile Layers: pick a model's evidence layers from a dataset with boxes (paper step 1)."""

from __future__ import annotations

from comfy_api.latest import io

from ..vea_engine.config import DEFAULTS
from ..vea_engine.labels import LABEL_RULES
from .bridge import LAYERS_TYPE, VLM_TYPE, progress_callback
from .checks import checked
from .files import resolve_read, resolve_write

NODE = "VEA Profile Layers"


class VEAProfileLayers(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VEAProfileLayers",
            display_name="VEA Profile Layers",
            category="VEA/layers",
            description="Rank every decoder layer by how well its last-token attention finds the evidence boxes "
            "of a dataset (AUROC, one forward pass per sample, no eager attention) and keep the best 10%. Saves the "
            "profile JSON to ComfyUI's output folder for VEA Layers (mode 'profile') and the CLI.",
            is_output_node=True,
            inputs=[
                VLM_TYPE.Input("model", tooltip="The model to profile."),
                io.String.Input(
                    "dataset",
                    default="",
                    tooltip="A JSONL manifest with image, question and evidence 'boxes' (xyxy pixels of the "
                    "original image), relative to ComfyUI's input folder (or a 'vea_datasets' folder). The paper uses "
                    "~100 rows.",
                ),
                io.Combo.Input(
                    "rule",
                    options=list(LABEL_RULES),
                    default="any",
                    tooltip="A token is evidence if its patch overlaps a box at all / by half / fully.",
                ),
                io.Float.Input(
                    "top_fraction",
                    default=DEFAULTS.top_layer_fraction,
                    min=0.01,
                    max=1.0,
                    step=0.01,
                    tooltip=f"Fraction of layers kept (at least one). Paper: {DEFAULTS.top_layer_fraction:g}.",
                ),
                io.Int.Input("limit", default=100, min=0, max=100000, tooltip="Use the first N good rows (0 = all)."),
                io.String.Input(
                    "filename",
                    default="vea/layer_profile.json",
                    tooltip="Where the profile JSON goes, relative to ComfyUI's output folder.",
                ),
            ],
            outputs=[
                LAYERS_TYPE.Output("layers", display_name="layers", tooltip="The selected layers (with their AUROC)."),
                io.Image.Output("plot", display_name="plot", tooltip="Per-layer AUROC / AP / NDCG, selected marked."),
            ],
        )

    @classmethod
    def validate_inputs(cls, dataset: str) -> bool | str:
        try:
            resolve_read(NODE, "dataset", dataset, "dataset")
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    @checked
    def execute(cls, model, dataset, rule, top_fraction, limit, filename) -> io.NodeOutput:
        import numpy as np

        from ..vea_engine.data import load_good_samples
        from ..vea_engine.images import uint8_to_tensor
        from ..vea_engine.profile_plot import plot_profile
        from ..vea_engine.profiling import profile_layers

        out = resolve_write(NODE, "filename", filename)
        samples = load_good_samples(
            resolve_read(NODE, "dataset", dataset, "dataset"), limit or None, require_boxes=True
        )
        profile = profile_layers(model.ready(), samples, rule, top_fraction, progress=progress_callback(len(samples)))
        path = profile.to_json(out)
        plot = uint8_to_tensor([np.asarray(plot_profile(profile).convert("RGB"))])
        return io.NodeOutput(
            profile.selection(str(path)), plot, ui={"text": [f"{path}: layers {list(profile.layers)}"]}
        )
