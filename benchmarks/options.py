"""The speed cost of each swap-quality option (issue 10), as a ratio against the plain swap of the same run.

    python benchmarks/options.py            # release-size networks, a few minutes on a 2-core CPU
    python benchmarks/options.py --quick    # tiny networks, under a minute

Every variant swaps the astronaut (512 x 512, one face) with a source encoded once, through
`HifiFacePipeline.swap`, so detection, alignment, the generator and the paste-back are in each:

- plain: the paste-back mask M_r alone (the behaviour before masks were composable);
- box: M_r x the feathered crop box (the default);
- region, occlusion, region+occlusion: plus the BiSeNet face parser on the target crop (at 512);
- enhance-gfpgan, enhance-restoreformer: plus a face-restoration network at 512 (spandrel);
- sources-3: three source photos averaged (`encode_sources`) against one, encoding included;
- mapping-2: t1.jpg (six faces) with two references mapped against face="all" on it.

Networks have random weights of the released layouts (the speed does not depend on the values):
the release generator at 256 (`common.release_model`), face-parsing.PyTorch's BiSeNet, GFPGANv1.4
and RestoreFormer. Variants run in interleaved rounds; each ratio is the median time over the
plain median of the same run. Writes benchmarks/results/options-<machine>.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from common import machine_info, parse_args, print_table, release_model, run_interleaved, save, timing_summary
from PIL import Image as PILImage
from skimage import data

from hififace import HifiFacePipeline
from hififace.enhance import load_enhancer
from hififace.faces import load_detector
from hififace.priors.parsing import FaceParser


def enhancers(folder: Path, quick: bool) -> dict[str, Path]:
    """GFPGANv1.4 and RestoreFormer checkpoints of the released layouts, random weights, as .pth files."""
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel.architectures.RestoreFormer import RestoreFormer

    paths = {"restoreformer": folder / "RestoreFormer.pth"}
    small = dict(n_embed=32, embed_dim=32, ch=32, ch_mult=(1,) * 6, num_res_blocks=1, z_channels=32)
    torch.save((RestoreFormer(**small) if quick else RestoreFormer()).state_dict(), paths["restoreformer"])
    if not quick:
        gfpgan = GFPGAN(
            out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
            num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True,
        )  # fmt: skip
        paths["gfpgan"] = folder / "GFPGANv1.4.pth"
        torch.save(gfpgan.state_dict(), paths["gfpgan"])
    return paths


def main() -> None:
    args = parse_args("Speed cost of masks, several sources, face mapping and face restoration.")
    repeats = args.repeats or (2 if args.quick else 3)
    torch.manual_seed(0)
    if args.quick:
        from common import tiny_model

        model = tiny_model()
    else:
        model = release_model(256)
    detector = load_detector("dlib")
    pipeline = HifiFacePipeline(model.to(args.device), detector, parser=FaceParser().eval().to(args.device))
    astronaut = data.astronaut()
    group = np.asarray(PILImage.open(_group_photo()).convert("RGB"))
    folder = Path(tempfile.mkdtemp(prefix="hififace-options-"))
    loaded = {name: load_enhancer(path, args.device) for name, path in enhancers(folder, args.quick).items()}
    photos = []
    for i, (dy, dx, gain) in enumerate(((0, 0, 1.0), (12, 6, 0.9), (6, 12, 1.1))):
        path = folder / f"source{i}.png"
        PILImage.fromarray(np.clip(astronaut[dy:, dx:] * gain, 0, 255).astype(np.uint8)).save(path)
        photos.append(path)
    source = pipeline.encode_source(photos[0])
    faces = sorted(pipeline.detect_faces(group), key=lambda f: f.box[0])
    references = pipeline.embed_faces(group, [faces[1], faces[4]])
    face_map = pipeline.face_map([(references[0], source), (references[1], source)])

    def swap(masks: str = "model", enhancer: str | None = None):
        def run():
            pipeline.enhancer = loaded.get(enhancer)
            return pipeline.swap(source, astronaut, masks=masks)

        return run

    variants = {
        "plain": swap("model"),
        "box": swap("model,box"),
        "region": swap("model,box,region"),
        "occlusion": swap("model,box,occlusion"),
        "region+occlusion": swap("model,box,region,occlusion"),
        **{f"enhance-{name}": swap("model,box", name) for name in loaded},
        "sources-1": lambda: pipeline.encode_source(photos[0]),
        "sources-3": lambda: pipeline.encode_source(photos),
        "group-all": lambda: pipeline.swap(source, group, face="all", masks="model,box"),
        "mapping-2": lambda: pipeline.swap(None, group, mapping=face_map, masks="model,box"),
    }
    record = run_interleaved(variants, args.warmup, repeats, args.device)
    pipeline.enhancer = None
    baselines = {"sources-3": "sources-1", "group-all": "group-all", "mapping-2": "group-all"}
    rows = []
    for name, r in record.items():
        base = baselines.get(name, "sources-1" if name == "sources-1" else "plain")
        summary = timing_summary(r["times"], 1)
        ratio = float(np.median(r["times"]) / np.median(record[base]["times"]))
        rows.append({"option": name, "against": base, "ratio": ratio, **summary})
    print_table(
        rows,
        [
            ("option", "option", ""),
            ("median s", "median_s", ".3f"),
            ("against", "against", ""),
            ("ratio", "ratio", ".2f"),
        ],
    )
    save(
        "options",
        {
            "benchmark": "speed cost of each swap-quality option (issue 10), ratio against the same run's baseline",
            "networks": "tiny generator and RestoreFormer (--quick)" if args.quick else
            "release-layout generator at 256, BiSeNet, GFPGANv1.4, RestoreFormer; random weights",
            "repeats": repeats,
            "warmup": args.warmup,
            "machine": machine_info(args.device),
            "results": rows,
        },
        args,
    )  # fmt: skip


def _group_photo() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    return Path(spec.origin).parent / "data" / "images" / "t1.jpg"


if __name__ == "__main__":
    main()
