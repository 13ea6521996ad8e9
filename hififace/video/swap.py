"""The frame loop: swap the source's face into every frame of a video with the pipeline's public steps.

Policy for a frame where the face choice finds no face (no face at all, an index beyond the faces
present, nobody like the reference): the frame passes through unchanged, as decoded, and is
counted in `VideoSummary.passed_through`. (A still image raises instead: `choose_faces`.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hififace.faces import FaceChoice, select_faces
from hififace.pipeline import AI_METADATA, HifiFacePipeline, SourceIdentity
from hififace.video.io import VideoReader, VideoWriter, check_video_paths
from hififace.video.tracking import FaceTracker, LandmarkSmoother

__all__ = ["ProgressFn", "VideoSummary", "swap_video"]

ProgressFn = Callable[[int, "int | None"], None]

# Container tags of every swapped video (MP4 needs "use_metadata_tags" for the custom ones).
VIDEO_METADATA = {
    "comment": AI_METADATA["description"],
    "description": AI_METADATA["description"],
    "ai_generated": AI_METADATA["ai_generated"],
    "encoder_software": AI_METADATA["software"],
}


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
        batch_size (int, default 8): frames whose faces go through the generator together.
        smoothing (LandmarkSmoother or bool, default True): the landmark filter; True for a
            default `LandmarkSmoother`, False to align every frame on its raw landmarks.
        cut_threshold (float, default 0.2): scene-cut threshold of `FaceTracker` (tracks restart).
        max_frames (int, optional): refuse videos with more frames.
        crf (int, default 18): H.264 quality (lower = better, larger).
        progress (callable (done, total or None), optional): called after every batch of frames.

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
    # All fail before any frame is decoded, in this order: an invalid choice (no reference read
    # yet), a source without a face, then a reference photo without one (embedded once, here).
    choice = pipeline.face_choice(face) if reference is None or isinstance(face, FaceChoice) else None
    source = pipeline.encode_source(source)
    choice = choice or pipeline.face_choice(face, reference)
    smoother = LandmarkSmoother() if smoothing is True else (smoothing or None)
    swapper = FrameSwapper(
        pipeline, source, choice, FaceTracker(smoother, cut_threshold), identity_strength, shape_strength,
        mask_erode, mask_blur,
    )  # fmt: skip
    with VideoReader(video_in) as reader:
        pipeline.check_pixels(reader.info.width, reader.info.height, f"the frames of {video_in}")
        with VideoWriter(video_out, reader, VIDEO_METADATA, crf) as writer:
            for batch in reader.batches(batch_size, writer.write_audio, max_frames):
                for frame in swapper(batch, writer.frames):
                    writer.write(frame)
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
        identity_strength, shape_strength, mask_erode, mask_blur: as in `HifiFacePipeline.swap`.

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
    ):
        self.pipeline, self.source, self.choice, self.tracker = pipeline, source, choice, tracker
        self.strengths = (identity_strength, shape_strength)
        self.mask = (mask_erode, mask_blur)
        self.swapped = 0

    def __call__(self, frames: Sequence[Any], first_index: int) -> list[Any]:
        """The `av.VideoFrame`s to encode for `frames`, the first being frame `first_index` of the video."""
        import av

        pipeline = self.pipeline
        images = [frame.to_ndarray(format="rgb24") for frame in frames]
        jobs = []
        for i, (frame, image) in enumerate(zip(frames, images, strict=True)):
            chosen = select_faces(
                pipeline.detect_faces(image),
                self.choice,
                embed=lambda some, im=image: pipeline.embed_faces(im, some),
            )
            t = float(frame.time) if frame.time is not None else first_index + i
            jobs.extend((i, face) for face in self.tracker(image, chosen, t))
        swaps = pipeline.swap_faces(self.source, [(images[i], face) for i, face in jobs], *self.strengths)
        per_frame: dict[int, list] = {}
        for (i, _), swap in zip(jobs, swaps, strict=True):
            per_frame.setdefault(i, []).append(swap)

        out = []
        for i, frame in enumerate(frames):
            if i in per_frame:
                new = av.VideoFrame.from_ndarray(
                    pipeline.composite(images[i], per_frame[i], *self.mask), format="rgb24"
                )
                new.pts, new.time_base = frame.pts, frame.time_base
                self.swapped += 1
            else:
                new = frame  # passed through: the decoded picture goes straight back to the encoder
                new.pict_type = av.video.frame.PictureType.NONE
            out.append(new)
        return out
