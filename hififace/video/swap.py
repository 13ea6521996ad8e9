"""The frame loop: swap the source's face into every frame of a video with the pipeline's public steps.

Policy for a frame where the face choice finds no face (no face at all, an index beyond the faces
present, nobody like the reference): the frame passes through unchanged, as decoded, and is
counted in `VideoSummary.passed_through`. (A still image raises instead: `choose_faces`.)

With a face mapping (`mapping=`, `HifiFacePipeline.face_map`), each face is matched to a reference
when it first appears and keeps that source while it is followed from frame to frame (its centre
within half a face width of where it was): a face turning away for a moment does not swap identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hififace.errors import SwapError
from hififace.faces import FaceChoice, FaceMap, select_faces
from hififace.pipeline import AI_METADATA, HifiFacePipeline, SourceIdentity
from hififace.video.io import VideoReader, VideoWriter, check_video_paths
from hififace.video.tracking import FaceTracker, LandmarkSmoother

__all__ = [
    "FEATURE_MAPS_PER_FACE",
    "GENERATOR_MEMORY",
    "ProgressFn",
    "VideoSummary",
    "faces_per_pass",
    "swap_video",
]

ProgressFn = Callable[[int, "int | None"], None]

# Container tags of every swapped video (MP4 needs "use_metadata_tags" for the custom ones).
VIDEO_METADATA = {
    "comment": AI_METADATA["description"],
    "description": AI_METADATA["description"],
    "ai_generated": AI_METADATA["ai_generated"],
    "encoder_software": AI_METADATA["software"],
}

# Memory one generator pass may take for its activations on the CPU, in bytes. A pass grows by
# about 0.24 GB per face for the release-scale model at 256 in fp32 (1.95 GB for 8 faces), which is
# 14 to 15 full-resolution maps of the encoder's first width; a video swap's peak is the model, the
# encoder's lookahead and one pass, so its faces go through in passes that fit this. On the CPU a
# pass of 8 faces is no faster per face than a pass of 1 (benchmarks/results/generator-*.json).
GENERATOR_MEMORY = 0.5 * 2**30
FEATURE_MAPS_PER_FACE = 15


def faces_per_pass(pipeline: HifiFacePipeline, memory: float = GENERATOR_MEMORY) -> int:
    """How many faces one generator pass of a video takes: as many as fit `memory`, 1 to `batch_size`.

    On a GPU the activations are not in the process's memory: the pass is `batch_size` faces.

    Args:
        pipeline (HifiFacePipeline): its model's crop size and first encoder width give the
            activations of one face (an estimate: `FEATURE_MAPS_PER_FACE` fp32 maps of that size);
            its `batch_size` is the most.
        memory (float, default `GENERATOR_MEMORY`): bytes the pass's activations may take.
    """
    if pipeline.device.type != "cpu":
        return pipeline.batch_size
    model = pipeline.model
    width = model.encoder.conv_in.out_channels
    per_face = FEATURE_MAPS_PER_FACE * width * model.image_size**2 * 4
    return max(1, min(pipeline.batch_size, int(memory // per_face)))


@dataclass(frozen=True)
class VideoSummary:
    """What `swap_video` did.

    Attributes:
        path (Path): the video written.
        frames (int): frames read and written (equal counts).
        swapped (int): frames in which at least one face was swapped.
        passed_through (int): frames written unchanged because no (chosen) face was found.
        fps (float): the frame rate (the input's average rate, kept in the output).
        audio (bool): whether an audio stream was carried over.
        skipped_packets (int): damaged video packets skipped (their frames are lost).
        missing_frames (int): frames the input declares that were never decoded (a cut file).
        damage (str): both of the above in words, "" when the input decoded whole.
    """

    path: Path
    frames: int
    swapped: int
    passed_through: int
    fps: float
    audio: bool
    skipped_packets: int = 0
    missing_frames: int = 0
    damage: str = ""


# Over 80 lines only by its signature and documented arguments (every option of the public call);
# the body is under 55 lines, and the work lives in the functions it calls.
def swap_video(
    pipeline: HifiFacePipeline,
    source: Any,
    video_in: str | os.PathLike,
    video_out: str | os.PathLike,
    face: str | int | FaceChoice = "largest",
    reference: Any = None,
    identity_strength: float = 1.0,
    shape_strength: float = 1.0,
    mask_erode: int | None = None,
    mask_blur: int | None = None,
    batch_size: int = 8,
    smoothing: LandmarkSmoother | bool = True,
    cut_threshold: float = 0.2,
    max_frames: int | None = None,
    crf: int = 18,
    progress: ProgressFn | None = None,
    masks: Any = None,
    mapping: Any = None,
) -> VideoSummary:
    """Swap the source's face into every frame of a video.

    Args:
        pipeline (HifiFacePipeline): detector and generator.
        source (path, PIL image, numpy array or SourceIdentity): the face to put in; encoded once.
        video_in (path): any video FFmpeg reads.
        video_out (path): .mp4, .mov, .m4v or .mkv; replaced atomically when done.
        face, reference, identity_strength, shape_strength, mask_erode, mask_blur: as in
            `HifiFacePipeline.swap`, applied per frame; a frame where the choice finds no face
            passes through (see the module docstring).
        batch_size (int, default 8): frames decoded, detected and tracked together; their faces go
            through the generator in passes of at most `faces_per_pass(pipeline)` faces, so that
            memory stays bounded by one pass whatever the batch (and the clip's length).
        smoothing (LandmarkSmoother or bool, default True): the landmark filter; True for a
            default `LandmarkSmoother`, False to align every frame on its raw landmarks.
        cut_threshold (float, default 0.2): scene-cut threshold of `FaceTracker` (tracks restart).
        max_frames (int, optional): refuse videos with more frames.
        crf (int, default 18): H.264 quality (lower = better, larger).
        progress (callable (done, total or None), optional): called after every batch of frames.
        masks (MaskOptions or str, optional): the paste-back masks, as in `HifiFacePipeline.swap`.
        mapping (dict reference -> source, pairs, or FaceMap, optional): instead of `source` (None)
            and `face`: each face receives the source of the reference it looks like, kept along
            its track (see the module docstring).

    Returns:
        VideoSummary.

    Raises:
        VideoError: missing or unreadable input, no video stream, no decodable frames, too many
            frames, or an output suffix that is not a supported container. Damaged packets and a
            cut file are not errors: they are skipped, counted and described in the summary.
        InvalidImageError, ImageTooLargeError, NoFaceError (source), FaceChoiceError, SwapError.
    """
    video_in, video_out = Path(video_in), Path(video_out)
    check_video_paths(video_in, video_out)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pipeline.check_inputs(identity_strength, shape_strength)
    masks = pipeline.mask_options(masks)
    if (source is None) == (mapping is None):
        raise SwapError("give either a source or a face mapping (reference -> source), not both")
    # All fail before any frame is decoded, in this order: an invalid choice (no reference read
    # yet), a source without a face, then a reference photo without one (embedded once, here).
    choice = pipeline.face_choice(face) if reference is None or isinstance(face, FaceChoice) else None
    face_map = pipeline.face_map(mapping) if mapping is not None else None
    source = pipeline.encode_source(source) if face_map is None else None
    choice = choice or pipeline.face_choice(face, reference)
    smoother = LandmarkSmoother() if smoothing is True else (smoothing or None)
    swapper = FrameSwapper(
        pipeline, source, choice, FaceTracker(smoother, cut_threshold), identity_strength, shape_strength,
        mask_erode, mask_blur, masks=masks, face_map=face_map,
    )  # fmt: skip
    with VideoReader(video_in) as reader:
        pipeline.check_pixels(reader.info.width, reader.info.height, f"the frames of {video_in}")
        with VideoWriter(video_out, reader, VIDEO_METADATA, crf) as writer:
            for batch in reader.batches(batch_size, writer.write_audio, max_frames):
                swapped = swapper(batch, writer.frames)
                del batch  # the decoded frames go before the next batch is decoded
                while swapped:  # each frame is freed as soon as it is encoded
                    writer.write(swapped.pop(0))
                if progress is not None:
                    progress(writer.frames, reader.info.frames)
    return VideoSummary(
        path=video_out,
        frames=writer.frames,
        swapped=swapper.swapped,
        passed_through=writer.frames - swapper.swapped,
        fps=float(reader.info.rate),
        audio=reader.info.audio,
        skipped_packets=reader.skipped_packets,
        missing_frames=reader.missing_frames,
        damage=reader.damage(),
    )


class FrameSwapper:
    """Detect, choose, track, swap (one generator pass per batch of frames) and paste.

    Args:
        pipeline (HifiFacePipeline): its public steps do the work.
        source (SourceIdentity): the encoded source.
        choice (FaceChoice): which faces of each frame.
        tracker (FaceTracker): smooths the chosen faces' landmarks over time.
        identity_strength, shape_strength, mask_erode, mask_blur, masks: as in `HifiFacePipeline.swap`.
        face_map (FaceMap, optional): map faces to sources instead of `source` and `choice`.
        per_pass (int, optional): faces per generator pass; default `faces_per_pass(pipeline)`.

    Attributes:
        swapped (int): frames so far in which at least one face was swapped.
    """

    def __init__(
        self,
        pipeline: HifiFacePipeline,
        source: SourceIdentity,
        choice: FaceChoice,
        tracker: FaceTracker,
        identity_strength: float = 1.0,
        shape_strength: float = 1.0,
        mask_erode: int | None = None,
        mask_blur: int | None = None,
        masks: Any = None,
        face_map: FaceMap | None = None,
        per_pass: int | None = None,
    ):
        self.pipeline, self.source, self.choice, self.tracker = pipeline, source, choice, tracker
        self.strengths = (identity_strength, shape_strength)
        self.mask = (mask_erode, mask_blur)
        self.masks = masks
        self.face_map = face_map
        self.per_pass = per_pass or faces_per_pass(pipeline)
        self.assigned: list[tuple[np.ndarray, float, int]] = []  # (centre, width, source index)
        self.swapped = 0

    def __call__(self, frames: Sequence[Any], first_index: int) -> list[Any]:
        """The `av.VideoFrame`s to encode for `frames`, the first being frame `first_index` of the video."""
        import av

        pipeline = self.pipeline
        images = [frame.to_ndarray(format="rgb24") for frame in frames]
        jobs = []
        for i, (frame, image) in enumerate(zip(frames, images, strict=True)):
            if self.face_map is None:
                chosen = select_faces(
                    pipeline.detect_faces(image),
                    self.choice,
                    embed=lambda some, im=image: pipeline.embed_faces(im, some),
                )
                sources = [0] * len(chosen)
            else:
                chosen, sources = self.assign_faces(image, pipeline.detect_faces(image))
            t = float(frame.time) if frame.time is not None else first_index + i
            tracked = self.tracker(image, chosen, t)
            jobs.extend((i, face, k) for face, k in zip(tracked, sources, strict=True))
        all_sources = [self.source] if self.face_map is None else list(self.face_map.sources)
        per_frame: dict[int, list] = {}
        for k, source in enumerate(all_sources):
            mine = [(i, face) for i, face, index in jobs if index == k]
            for start in range(0, len(mine), self.per_pass):
                part = mine[start : start + self.per_pass]
                swaps = pipeline.swap_faces(source, [(images[i], face) for i, face in part], *self.strengths)
                pipeline.enhance_faces(swaps)  # no-op without an enhancer
                for (i, _), swap in zip(part, swaps, strict=True):
                    per_frame.setdefault(i, []).append(swap)

        out = []
        for i, frame in enumerate(frames):
            if i in per_frame:
                swaps = sorted(per_frame[i], key=lambda s: s.box[0])
                new = av.VideoFrame.from_ndarray(
                    pipeline.composite(images[i], swaps, *self.mask, masks=self.masks), format="rgb24"
                )
                new.pts, new.time_base = frame.pts, frame.time_base
                self.swapped += 1
            else:
                new = frame  # passed through: the decoded picture goes straight back to the encoder
                new.pict_type = av.video.frame.PictureType.NONE
            out.append(new)
        return out

    def assign_faces(self, image: Any, faces: Sequence[Any]) -> tuple[list[Any], list[int]]:
        """The faces that receive a source, and whose: kept along tracks, else by `FaceMap.assign`."""
        previous, self.assigned = self.assigned, []
        known: dict[int, int] = {}
        for j, face in enumerate(faces):
            center, width = np.asarray(face.center, dtype=np.float64), float(face.width)
            for c, w, k in previous:
                if np.linalg.norm(center - c) <= 0.5 * max(w, width):
                    known[j] = k
                    break
        fresh = [j for j in range(len(faces)) if j not in known]
        if fresh:
            embeddings = self.pipeline.embed_faces(image, [faces[j] for j in fresh])
            for j, k in zip(fresh, self.face_map.assign(embeddings), strict=True):
                if k is not None:
                    known[j] = k
        chosen, sources = [], []
        for j in sorted(known, key=lambda j: faces[j].box[0]):
            chosen.append(faces[j])
            sources.append(known[j])
            self.assigned.append(
                (np.asarray(faces[j].center, dtype=np.float64), float(faces[j].width), known[j])
            )
        return chosen, sources
