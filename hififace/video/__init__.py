"""Face swapping through a video, built on the public steps of `HifiFacePipeline`.

    summary = swap_video(pipeline, "source.jpg", "clip.mp4", "swapped.mp4", progress=print)
    # VideoSummary(frames=250, swapped=241, passed_through=9, fps=25.0, audio=True, ...)

- `hififace.video.io`: container I/O (decode in batches, H.264 encode, audio copy, metadata,
  atomic output);
- `hififace.video.tracking`: landmark smoothing over time (one-euro filter) and scene cuts;
- `hififace.video.swap`: the frame loop, `swap_video`.
- `hififace.video.live`: live camera swapping, `run_live` (frames dropped, never queued).

The source's identity code is computed once for the whole video. Every frame keeps its timestamp
(same frame count and frame rate as the input). A frame where the face choice finds no face
passes through unchanged and is counted (`VideoSummary.passed_through`).
"""

from hififace.formats import VIDEO_OUTPUT_SUFFIXES, VIDEO_SUFFIXES, is_video
from hififace.video.io import VideoError, VideoInfo, VideoReader, VideoWriter
from hififace.video.live import CameraError, LiveSwapper, open_camera, run_live
from hififace.video.swap import FrameSwapper, VideoSummary, swap_video
from hififace.video.tracking import FaceTracker, LandmarkSmoother

# The name the command line and older code use for the containers written.
OUTPUT_SUFFIXES = VIDEO_OUTPUT_SUFFIXES

__all__ = [
    "OUTPUT_SUFFIXES",
    "VIDEO_OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "CameraError",
    "FaceTracker",
    "FrameSwapper",
    "LandmarkSmoother",
    "LiveSwapper",
    "VideoError",
    "VideoInfo",
    "VideoReader",
    "VideoSummary",
    "VideoWriter",
    "is_video",
    "open_camera",
    "run_live",
    "swap_video",
]
