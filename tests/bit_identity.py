"""The swaps whose outputs must never change by a refactoring, and the file that records them.

Three scenarios on shipped photos with the tiny model of `helpers.py` (seed 0, CPU, fp32, dlib):

- "image": the astronaut as source onto the astronaut as target (the largest face);
- "group": the astronaut onto insightface's t1.jpg with face="all" (six faces);
- "video": the astronaut onto the short clip of `test_video.py` (12 frames, two without a face).

Each output is recorded as a SHA-256 of its bytes (plus shape and dtype), which is what the test
compares, and as the region around the changed pixels (uint8, compressed), which only serves to
say how far a failing output is off. Video frames are captured as the arrays handed to the encoder
(`av.VideoFrame.from_ndarray`), before H.264, whose output may depend on the encoder's threads.

Torch runs on one thread here: float sums in a different order (more threads) move some pixels
by one level. The digests still assume this machine's CPU kernels (x86-64, the same torch).

Regenerate (only when the behaviour is meant to change; say so in the commit):

    PYTHONPATH=$PWD python tests/bit_identity.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "bit_identity.npz"
FACE_FIELDS = ("target_crop", "image_out", "image", "image_low", "mask", "mask_low")


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def changed_region(output: np.ndarray, before: np.ndarray) -> np.ndarray:
    """The box of `output` around every pixel that differs from `before` (empty when none)."""
    changed = np.argwhere((output != before).any(axis=-1))
    if changed.size == 0:
        return output[:0, :0]
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0) + 1
    return output[y0:y1, x0:x1]


def image_outputs(pipeline, target: np.ndarray, face: str) -> dict[str, np.ndarray]:
    """The swapped image and every face's intermediates of `pipeline.swap`, by name."""
    from skimage import data

    result = pipeline.swap(data.astronaut(), target, face=face)
    outputs = {"image": result.image, "region": changed_region(result.image, target)}
    for i, swap in enumerate(result.faces):
        for name in FACE_FIELDS:
            outputs[f"face{i}_{name}"] = getattr(swap, name)
        outputs[f"face{i}_matrix"] = swap.matrix
    return outputs


def video_outputs(pipeline, folder: Path, monkeypatch=None) -> dict[str, np.ndarray]:
    """The frames `swap_video` hands to the encoder after pasting, and its counts."""
    import av
    from test_video import clip_frames, write_clip

    from hififace.video import swap_video

    clip = folder / "clip.mp4"
    write_clip(clip, clip_frames())
    captured = []
    original = av.VideoFrame.from_ndarray

    def capture(array, *args, **kwargs):
        captured.append(np.array(array, copy=True))
        return original(array, *args, **kwargs)

    if monkeypatch is not None:
        monkeypatch.setattr(av.VideoFrame, "from_ndarray", capture)
    else:
        av.VideoFrame.from_ndarray = capture
    try:
        summary = swap_video(pipeline, _astronaut(), clip, folder / "out.mp4", batch_size=5)
    finally:
        if monkeypatch is None:
            av.VideoFrame.from_ndarray = original
    outputs = {f"frame{i}": frame for i, frame in enumerate(captured)}
    outputs["counts"] = np.array([summary.frames, summary.swapped, summary.passed_through])
    return outputs


def all_outputs(pipeline, folder: Path, monkeypatch=None) -> dict[str, dict[str, np.ndarray]]:
    """Every scenario's outputs: {"image": {...}, "group": {...}, "video": {...}}."""
    from helpers import insightface_photo
    from PIL import Image as PILImage

    group = np.asarray(PILImage.open(insightface_photo("t1.jpg")).convert("RGB"))
    return {
        "image": image_outputs(pipeline, _astronaut(), "largest"),
        "group": image_outputs(pipeline, group, "all"),
        "video": video_outputs(pipeline, folder, monkeypatch),
    }


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def record(outputs: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """What the fixture keeps: a digest per output, and the changed region of each swapped image."""
    kept: dict[str, np.ndarray] = {}
    for scenario, arrays in outputs.items():
        for name, array in arrays.items():
            kept[f"{scenario}/{name}"] = np.array(digest(array))
            if name == "region":
                kept[f"{scenario}/{name}/pixels"] = array
    return kept


def main() -> None:
    """Build the tiny model as `helpers.tiny_model_dir` does, run every scenario, write FIXTURE."""
    import tempfile

    import torch
    from helpers import TINY

    from hififace import HifiFace, HifiFacePipeline

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        HifiFace(**TINY).save_pretrained(folder / "tiny-hififace")
        pipeline = HifiFacePipeline.from_pretrained(folder / "tiny-hififace", detector="dlib")
        kept = record(all_outputs(pipeline, folder))
    np.savez_compressed(FIXTURE, **kept)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e6:.2f} MB, {len(kept)} entries)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
