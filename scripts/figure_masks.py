"""README's masks figure: target, each paste-back mask, their product and the result, side by side.

    python scripts/figure_masks.py                                   # tiny random model, shipped photos
    python scripts/figure_masks.py --model models/hififace-256 --parser models/face-parser

The target is scikit-image's astronaut, the source insightface's Tom Hanks photo (both ship with
installed packages). Without --model / --parser, a tiny generator and a BiSeNet with random weights
(seed 0) stand in: the figure then shows how the masks compose, not what a trained model makes.
Writes docs/masks.png (a PNG tagged as AI-generated).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage import data

from hififace import HifiFace, HifiFacePipeline
from hififace.faces import load_detector
from hififace.imageio import save_image
from hififace.pipeline import AI_METADATA
from hififace.priors.parsing import FaceParser
from hififace.tensors import to_uint8_rgb

REPO = Path(__file__).resolve().parents[1]
TINY = dict(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64)
PANELS = (
    ("target_crop", "target (aligned)"),
    ("mask_model", "model: M_r softened"),
    ("mask_box", "box: feathered square"),
    ("mask_region", "region: skin,brows,nose,mouth"),
    ("mask_occlusion", "occlusion"),
    ("paste_mask", "final: the product"),
    ("result", "result (aligned)"),
)


def build_pipeline(model: str | None, parser: str | None) -> HifiFacePipeline:
    """The user's converted model and parser, or tiny random-weight stand-ins (seed 0)."""
    torch.manual_seed(0)
    generator = HifiFace.from_pretrained(model) if model else HifiFace(**TINY)
    face_parser = FaceParser.from_pretrained(parser) if parser else FaceParser()
    return HifiFacePipeline(generator, load_detector("dlib"), parser=face_parser.eval())


def figure(pipeline: HifiFacePipeline, panel: int = 192) -> np.ndarray:
    """The figure as a uint8 RGB array: one labelled column per panel."""
    source = (
        Path(importlib.util.find_spec("insightface").origin).parent
        / "data"
        / "images"
        / "Tom_Hanks_54745.png"
    )
    target = data.astronaut()
    result = pipeline.swap(
        source, target, masks="model,box,region,occlusion", regions="skin,brows,nose,mouth", mask_padding=0.08
    )
    face = result.faces[0]
    pictures = dict(face.intermediates())
    # the result seen through the same alignment as the target crop
    pictures["result"] = cv2.warpAffine(result.image, face.matrix, face.target_crop.shape[:2][::-1])
    label_height = 22
    canvas = Image.new("RGB", (panel * len(PANELS), panel + label_height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (key, label) in enumerate(PANELS):
        tile = Image.fromarray(to_uint8_rgb(pictures[key])).resize((panel, panel), Image.Resampling.LANCZOS)
        canvas.paste(tile, (i * panel, label_height))
        draw.text((i * panel + 4, 4), label, fill="black")
    return np.asarray(canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a converted model folder (default: tiny random weights)")
    parser.add_argument("--parser", help="a converted face parser folder (default: random weights)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "masks.png")
    args = parser.parse_args()
    picture = figure(build_pipeline(args.model, args.parser))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {save_image(args.out, picture, AI_METADATA)}")


if __name__ == "__main__":
    main()
