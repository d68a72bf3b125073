"""The shipped workflows, one description each: nodes, widget values, links, groups and a Note.

``scripts/make_workflows.py`` turns each graph into the UI format (laid out, measured in the
real front end) and the API format, reading widget order and socket types from a live
server, so a graph here names only what differs from a node's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXAMPLE_IMAGE = "vea_example.png"
SAM3 = "sam3.1_multiplex_fp16.safetensors"  # what ComfyUI 0.33's "Image Segmentation (SAM3)" blueprint loads
QWEN = "Qwen2.5-VL-7B-Instruct"
LLAVA = "llava-1.5-7b-hf"
WIDTH = 280  # node width unless a graph says otherwise
COL_GAP = 40  # between columns of one group
COLORS = {  # LGraphCanvas.node_colors[...].groupcolor
    "load": "#3f789e",
    "attribute": "#b06634",
    "mask": "#8A8",
    "highlight": "#b58b2a",
    "answer": "#88A",
    "evidence": "#a1309b",
}


@dataclass
class Node:
    id: int
    type: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output name)
    title: str | None = None
    width: int = WIDTH
    pos: tuple[int, int] = (0, 0)  # set by layout()
    size: tuple[int, int] | None = None  # measured in the front end; None: let it compute


@dataclass
class Group:
    title: str
    color: str
    columns: list[list[int]]  # node ids, per column top to bottom; columns left to right


@dataclass
class Graph:
    nodes: list[Node]
    stacks: list[list[Group]]  # left to right, each a stack of groups top to bottom; stacks[0] is Load
    note: str  # what the graph does and where models and image go
    note_under: tuple[int, int] = (1, -1)  # the first and last stack the Note lies below (where no link runs)
    comfy: str = "0.3.75"  # the oldest ComfyUI version with every node the graph uses

    @property
    def groups(self) -> list[Group]:
        return [group for stack in self.stacks for group in stack]


def _models_and_image(*checkpoints: str) -> str:
    folders = " and ".join(f"ComfyUI/models/VLM/{c}" for c in checkpoints)
    return (
        "Models: each checkpoint is a folder in ComfyUI/models/VLM/<checkpoint folder> "
        f"(config.json, *.safetensors, processor files); here {folders}.\n"
        f"Image: copy {EXAMPLE_IMAGE} from this pack's workflows/ folder into ComfyUI/input/, or pick your own."
    )


def _question(text):
    return Node(1, "PrimitiveStringMultiline", {"value": text}, title="Question")


def basic(question: str) -> Graph:
    nodes = [
        _question(question),
        Node(2, "VEALoadVLM", {"checkpoint": QWEN}),
        Node(3, "LoadImage", {"image": EXAMPLE_IMAGE}),
        Node(4, "VEALayers", {"mode": "preset"}, {"model": (2, "model")}),
        Node(
            5,
            "VEAExtractAttention",
            {},
            {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING"), "layers": (4, "layers")},
        ),
        Node(6, "VEADenoise", {"lam": 10.0}, {"attention": (5, "attention")}, width=240),
        Node(7, "VEASmooth", {"sigma": 0.5}, {"attention": (6, "denoised")}, width=240),
        Node(8, "VEANormalize", {}, {"mask": (7, "smoothed")}, width=240),
        Node(9, "VEABlend", {"alpha": 0.5}, {"image": (5, "model_image"), "mask": (8, "normalized")}),
        Node(
            10,
            "VEAAnswer",
            {"prompt_style": "vea"},
            {"model": (2, "model"), "image": (9, "highlighted"), "question": (1, "STRING")},
            width=300,
        ),
        Node(11, "PreviewAny", {}, {"source": (10, "answer")}, title="VEA answer", width=300),
        Node(12, "SaveImage", {"filename_prefix": "vea/highlighted"}, {"images": (9, "highlighted")}),
        Node(13, "PreviewImage", {}, {"images": (5, "heatmap")}),
    ]
    stacks = [
        [Group("1. Load", COLORS["load"], [[2, 3, 1]])],  # this order crosses the fewest links
        [Group("2. Attribute", COLORS["attribute"], [[4, 5, 13]])],
        [Group("3. Mask", COLORS["mask"], [[6, 7, 8]])],
        [Group("4. Highlight", COLORS["highlight"], [[9, 12]])],
        [Group("5. Answer", COLORS["answer"], [[10, 11]])],
    ]
    note = (
        "VEA, stage by stage: the model's attention over the image (2) is denoised, smoothed and normalized "
        "into an evidence mask (3) that dims everything but the evidence (4); the same model then answers "
        "from the highlighted image (5).\n" + _models_and_image(QWEN)
    )
    return Graph(nodes, stacks, note)


def delegate(question: str) -> Graph:
    nodes = [
        _question(question),
        Node(2, "VEALoadVLM", {"checkpoint": QWEN}, title="Mask model (Qwen2.5-VL)"),
        Node(3, "LoadImage", {"image": EXAMPLE_IMAGE}),
        Node(4, "VEALoadVLM", {"checkpoint": LLAVA}, title="Answer model (LLaVA-1.5)"),
        Node(5, "VEALayers", {"mode": "preset"}, {"model": (2, "model")}),
        Node(
            6,
            "VEAExtractAttention",
            {},
            {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING"), "layers": (5, "layers")},
        ),
        Node(7, "VEADenoise", {}, {"attention": (6, "attention")}, width=240),
        Node(8, "VEASmooth", {}, {"attention": (7, "denoised")}, width=240),
        Node(9, "VEANormalize", {}, {"mask": (8, "smoothed")}, width=240),
        Node(
            10,
            "VEAAlignMask",
            {},
            {
                "mask": (9, "normalized"),
                "attention": (6, "attention"),
                "image": (3, "IMAGE"),
                "answer_model": (4, "model"),
            },
        ),
        Node(11, "VEABlend", {}, {"image": (10, "aligned_image"), "mask": (10, "aligned_mask")}),
        Node(
            12,
            "VEAAnswer",
            {"prompt_style": "vea"},
            {"model": (4, "model"), "image": (11, "highlighted"), "question": (1, "STRING")},
            width=300,
        ),
        Node(13, "PreviewAny", {}, {"source": (12, "answer")}, title="VEA answer (delegate mask)", width=300),
        Node(14, "SaveImage", {"filename_prefix": "vea/delegate"}, {"images": (11, "highlighted")}),
    ]
    stacks = [
        [Group("1. Load", COLORS["load"], [[4, 2, 3, 1]])],  # this order crosses the fewest links
        [Group("2. Attribute", COLORS["attribute"], [[5, 6]])],
        [Group("3. Mask", COLORS["mask"], [[7, 8, 9]])],
        [Group("4. Highlight", COLORS["highlight"], [[10, 11, 14]])],
        [Group("5. Answer", COLORS["answer"], [[12, 13]])],
    ]
    note = (
        "VEA with a delegate mask: Qwen2.5-VL's attention over the image (2) becomes an evidence mask (3), "
        "aligned to what LLaVA-1.5 sees and used to dim everything but the evidence (4); LLaVA-1.5 answers "
        "from the highlighted image (5).\n" + _models_and_image(QWEN, LLAVA)
    )
    return Graph(nodes, stacks, note, note_under=(3, 4))  # clear of the links from Question and Load Image


def compare(question: str) -> Graph:
    nodes = [
        _question(question),
        Node(2, "VEALoadVLM", {"checkpoint": QWEN}),
        Node(3, "LoadImage", {"image": EXAMPLE_IMAGE}),
        Node(4, "VEAAllInOne", {}, {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING")}),
        # as wide as the two columns of Highlight below them: room for the answers' text
        Node(5, "PreviewAny", {}, {"source": (4, "base_answer")}, title="Base answer", width=2 * WIDTH + COL_GAP),
        Node(6, "PreviewAny", {}, {"source": (4, "vea_answer")}, title="VEA answer", width=2 * WIDTH + COL_GAP),
        Node(7, "SaveImage", {"filename_prefix": "vea/compare"}, {"images": (4, "highlighted")}),
        Node(8, "MaskToImage", {}, {"mask": (4, "mask")}),
        Node(9, "PreviewImage", {}, {"images": (8, "IMAGE")}, title="Evidence map"),
    ]
    stacks = [
        [Group("1. Load", COLORS["load"], [[2, 3, 1]])],
        [Group("2. VEA (all-in-one)", COLORS["attribute"], [[4]])],
        [
            Group("3. Answer", COLORS["answer"], [[6, 5]]),
            Group("4. Highlight", COLORS["highlight"], [[7, 8], [9]]),
        ],
    ]
    note = (
        "Base vs VEA: one node runs every stage (attribute, mask, highlight, answer) and returns the "
        "model's plain answer and its VEA answer (3), the highlighted image and the evidence map (4).\n"
        + _models_and_image(QWEN)
    )
    return Graph(nodes, stacks, note, note_under=(1, 1))


def _attribution(first_id: int) -> list[Node]:
    """VEA Layers and VEA Extract Attention on the Qwen model (node ids ``first_id``, ``first_id + 1``)."""
    return [
        Node(first_id, "VEALayers", {"mode": "preset"}, {"model": (2, "model")}),
        Node(
            first_id + 1,
            "VEAExtractAttention",
            {},
            {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING"), "layers": (first_id, "layers")},
        ),
    ]


def zoom(question: str) -> Graph:
    nodes = [
        _question(question),
        Node(2, "VEALoadVLM", {"checkpoint": QWEN}),
        Node(3, "LoadImage", {"image": EXAMPLE_IMAGE}),
        *_attribution(4),
        Node(
            6,
            "VEAZoom",
            {},
            {"model": (2, "model"), "image": (3, "IMAGE"), "question": (1, "STRING"), "attention": (5, "attention")},
        ),
        Node(7, "PreviewAny", {}, {"source": (6, "answer")}, title="Zoomed answer", width=300),
        Node(8, "PreviewImage", {}, {"images": (6, "crop")}, title="Zoomed-in crop", width=300),
        Node(9, "PreviewAny", {}, {"source": (6, "window")}, title="Window (original pixels)", width=300),
    ]
    stacks = [
        [Group("1. Load", COLORS["load"], [[2, 3, 1]])],
        [Group("2. Attribute", COLORS["attribute"], [[4, 5]])],
        [Group("3. Zoom", COLORS["evidence"], [[6]])],
        [Group("4. Answer", COLORS["answer"], [[7, 9, 8]])],
    ]
    note = (
        "Attention-guided zoom (ViCrop-style): the model's attention over the image (2) points at the window of "
        "the original that holds the evidence, 1x to 2x the model's input side and at most 60% of the image's "
        "side; it is cropped at full resolution "
        "and the model answers from the whole image and the crop together (3), shown with the crop (4).\n"
        + _models_and_image(QWEN)
    )
    return Graph(nodes, stacks, note)


def boxes(question: str) -> Graph:
    nodes = [
        _question(question),
        Node(2, "VEALoadVLM", {"checkpoint": QWEN}),
        Node(3, "LoadImage", {"image": EXAMPLE_IMAGE}),
        *_attribution(4),
        Node(6, "VEAEvidenceBoxes", {}, {"image": (3, "IMAGE"), "attention": (5, "attention")}),
        Node(7, "SaveImage", {"filename_prefix": "vea/boxes"}, {"images": (6, "preview")}, title="Boxes (saved)"),
        Node(8, "PreviewImage", {}, {"images": (6, "crops")}, title="Evidence crops"),
        Node(9, "PreviewAny", {}, {"source": (6, "boxes")}, title="Boxes JSON (original pixels)"),
        Node(10, "MaskToImage", {}, {"mask": (6, "boxes_mask")}),
        Node(11, "PreviewImage", {}, {"images": (10, "IMAGE")}, title="Boxes mask"),
    ]
    stacks = [
        [Group("1. Load", COLORS["load"], [[2, 3, 1]])],
        [Group("2. Attribute", COLORS["attribute"], [[4, 5]])],
        [Group("3. Evidence boxes", COLORS["evidence"], [[6, 10]])],
        [Group("4. Boxes and crops", COLORS["highlight"], [[7, 9], [8, 11]])],
    ]
    note = (
        "Evidence boxes: the model's attention over the image (2), denoised, is cut into connected regions; "
        "each becomes a box of the original image (3), drawn and saved, cropped and listed as JSON (4), ready "
        "for a detailer, SAM or an upscaler.\n" + _models_and_image(QWEN)
    )
    return Graph(nodes, stacks, note)


def sam3(question: str) -> Graph:
    nodes = [
        _question(question),
        Node(2, "VEALoadVLM", {"checkpoint": QWEN}),
        Node(3, "LoadImage", {"image": EXAMPLE_IMAGE}),
        *_attribution(4),
        Node(6, "VEAEvidenceBoxes", {"max_boxes": 2}, {"image": (3, "IMAGE"), "attention": (5, "attention")}),
        Node(7, "DrawBBoxes", {}, {"image": (3, "IMAGE"), "bboxes": (6, "bboxes")}),
        Node(8, "SaveImage", {"filename_prefix": "vea/sam3_boxes"}, {"images": (7, "out_image")}, title="Boxes"),
        Node(9, "CheckpointLoaderSimple", {"ckpt_name": SAM3}, title="Load SAM 3"),
        Node(10, "SAM3_Detect", {}, {"model": (9, "MODEL"), "image": (3, "IMAGE"), "bboxes": (6, "bboxes")}),
        Node(11, "MaskToImage", {}, {"mask": (10, "masks")}),
        Node(12, "PreviewImage", {}, {"images": (11, "IMAGE")}, title="SAM 3 masks"),
    ]
    stacks = [
        [Group("1. Load", COLORS["load"], [[2, 3, 1]])],
        [Group("2. Attribute", COLORS["attribute"], [[4, 5]])],
        [Group("3. Evidence boxes", COLORS["evidence"], [[6]])],
        [
            Group("4. Draw (core)", COLORS["highlight"], [[7, 8]]),
            Group("5. SAM 3 within the boxes (core)", COLORS["mask"], [[9, 10], [11, 12]]),
        ],
    ]
    note = (
        "Evidence boxes into ComfyUI's own nodes (ComfyUI 0.33+): the model's attention over the image (2) is cut "
        "into boxes (3) whose bounding-box output Draw BBoxes draws (4) and SAM 3 segments within (5).\n"
        + _models_and_image(QWEN)
        + f"\nSAM 3: {SAM3} in ComfyUI/models/checkpoints (Draw BBoxes runs without it)."
    )
    return Graph(nodes, stacks, note, note_under=(1, 2), comfy="0.33.0")


GRAPHS = {
    "vea_basic": basic,
    "vea_delegate": delegate,
    "vea_compare": compare,
    "vea_zoom": zoom,
    "vea_boxes": boxes,
    "vea_sam3": sam3,
}
