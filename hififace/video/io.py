"""Video containers with PyAV: decode frames in batches, encode H.264, copy the audio, tag metadata.

- `VideoReader` opens a video, says what it holds (`VideoInfo`) and yields its decoded frames in
  batches, handing every audio packet to a callback as it is demuxed.
- `VideoWriter` writes H.264 (libx264 when present) with the input's frame rate and time base,
  the input's audio stream copied as it is (transcoded to the container's default codec only
  when the container cannot hold it; other streams are dropped), and "AI-generated" container
  tags. It writes to a temporary file beside the output and renames it when done
  (`hififace.atomic.atomic_path`), so a failed run never leaves a half-written video.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from hififace.atomic import atomic_path
from hififace.errors import SwapError
from hififace.formats import MP4_LIKE_SUFFIXES, VIDEO_OUTPUT_SUFFIXES

__all__ = ["VideoError", "VideoInfo", "VideoReader", "VideoWriter", "check_video_paths"]


class VideoError(SwapError):
    """A video cannot be read or written: missing, unreadable, no video stream, no frames, too long."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds.

    Attributes:
        width, height (int): frame size in pixels.
        rate (Fraction): the average frame rate (guessed when the container has none; 25 at worst).
        frames (int or None): the frame count the container declares, when it does.
        audio (bool): whether it has an audio stream (the first is carried over).
    """

    width: int
    height: int
    rate: Fraction
    frames: int | None
    audio: bool


def check_video_paths(video_in: Path, video_out: Path) -> None:
    """Raise `VideoError` unless `video_in` is a file and `video_out` has a container suffix written here."""
    if video_out.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise VideoError(
            f"{video_out}: cannot write {video_out.suffix or 'a file without suffix'}; use .mp4, .mov or .mkv"
        )
    if not video_in.is_file():
        raise VideoError(
            f"{video_in}: no such file" if not video_in.is_dir() else f"{video_in}: is a folder, not a video"
        )


class VideoReader:
    """Decode a video file (a context manager; closes the container on exit).

    Args:
        path (Path): any video FFmpeg reads.

    Raises:
        VideoError: unreadable, no frames before the end of the file, or no video stream.
    """

    def __init__(self, path: Path):
        import av

        self.path = path
        try:
            self.container = av.open(str(path))
        except av.error.EOFError as e:
            raise VideoError(f"{path}: the video has no frames (the file ends before any)") from e
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{path}: cannot read the video ({e})") from e
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.skipped_packets = 0  # packets the decoder rejected (see `batches`)
        self.missing_frames = 0  # frames the container declares but that never came
        self.truncated = False
        self.stream.thread_type = "AUTO"
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        try:
            self.info = VideoInfo(
                width=self.stream.width,
                height=self.stream.height,
                rate=self.stream.average_rate or self.stream.guessed_rate or Fraction(25),
                frames=self.stream.frames or None,
                audio=self.audio is not None,
            )
        except (AttributeError, ValueError, ZeroDivisionError) as e:  # a garbled header: no decoder, no size
            self.container.close()
            raise VideoError(f"{path}: cannot read the video stream ({e})") from e
        if not self.info.width or not self.info.height:
            self.container.close()
            raise VideoError(f"{path}: the video stream has no picture size (a damaged header)")

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()

    def batches(
        self, size: int, on_audio: Callable[[Any], None], max_frames: int | None = None
    ) -> Iterator[list[Any]]:
        """Decoded frames (`av.VideoFrame`) in lists of `size` (the last may be shorter), in order.

        A packet the decoder rejects is skipped and counted (`skipped_packets`); a file that ends
        early (truncated, or a demuxer error past which nothing can be read) stops the frames there
        and sets `truncated`; frames the container declares but that never came are counted in
        `missing_frames` once the frames are done. Only a video with no decodable frame at all fails.

        Args:
            size (int): frames per batch.
            on_audio (callable packet -> None): receives every packet of the audio stream, in
                demuxing order (interleaved with the video).
            max_frames (int, optional): raise `VideoError` on more frames.
        """
        import av

        pending, count = [], 0
        self.skipped_packets, self.missing_frames, self.truncated = 0, 0, False
        streams = (self.stream, self.audio) if self.audio is not None else (self.stream,)
        for packet in self._packets(streams):
            if packet.stream is self.audio:
                on_audio(packet)
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                # one damaged packet costs its own picture(s), not the whole video
                self.skipped_packets += packet.size > 0
                continue
            for frame in frames:
                pending.append(frame)
                count += 1
                if max_frames is not None and count > max_frames:
                    raise VideoError(f"{self.path}: has more than {max_frames} frames, the limit here")
                if len(pending) == size:
                    # handed over, not kept: the caller frees each frame once it is encoded
                    yield _take(pending)
        if pending:
            yield _take(pending)
        declared = self.info.frames or 0
        self.missing_frames = max(0, declared - count)
        self.truncated = self.truncated or self.missing_frames > 0
        if count == 0:
            damaged = f" ({self.skipped_packets} damaged packets skipped)" if self.skipped_packets else ""
            raise VideoError(f"{self.path}: the video has no frames{damaged}")

    def _packets(self, streams: tuple[Any, ...]) -> Iterator[Any]:
        """The container's packets; a demuxer error (cut or garbled file) ends them and sets `truncated`."""
        import av

        demuxer = self.container.demux(*streams)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                return
            except av.error.FFmpegError:
                self.truncated = True
                return
            yield packet

    def damage(self) -> str:
        """What was lost while decoding, in words ("" when nothing was): after `batches` is done."""
        parts = []
        if self.skipped_packets:
            parts.append(f"{self.skipped_packets} damaged packet(s) skipped")
        if self.missing_frames:
            declared = self.info.frames
            parts.append(f"truncated: {self.missing_frames} of {declared} declared frames missing")
        elif self.truncated:
            parts.append("truncated: the file ends before its last frames")
        return "; ".join(parts)


class VideoWriter:
    """Write H.264 frames and the input's audio to `path`, atomically (a context manager).

    Args:
        path (Path): .mp4, .mov, .m4v or .mkv; replaced only when the `with` block ends without error.
        reader (VideoReader): the input; its size, time base, frame rate and audio stream are kept.
        metadata (dict of str to str): container tags.
        crf (int, default 18): H.264 quality (lower = better, larger).
    """

    def __init__(self, path: Path, reader: VideoReader, metadata: dict[str, str], crf: int = 18):
        self.path, self.reader, self.metadata, self.crf = path, reader, metadata, crf
        self.frames = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> VideoWriter:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp = self._stack.enter_context(atomic_path(self.path, keep_suffix=True))
            mp4 = self.path.suffix.lower() in MP4_LIKE_SUFFIXES
            options = {"movflags": "+use_metadata_tags+faststart"} if mp4 else {}
            self.out = self._stack.enter_context(av.open(str(tmp), "w", options=options))
            self.out.metadata.update(self.metadata)
            self.encoder = _video_encoder(self.out, self.reader.stream, self.reader.info.rate, self.crf)
            self.audio, self.transcode_audio = _audio_stream(self.out, self.reader.audio)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> bool | None:
        if kind is None:
            try:
                self._flush()
            except BaseException:
                self._stack.__exit__(*sys.exc_info())  # close and remove the temporary file
                raise
        return self._stack.__exit__(kind, error, tb)

    def write(self, frame: Any) -> None:
        """Encode one `av.VideoFrame` (frames without a timestamp get their index)."""
        if frame.pts is None:
            frame.pts = self.frames
        for packet in self.encoder.encode(frame):
            self.out.mux(packet)
        self.frames += 1

    def write_audio(self, packet: Any) -> None:
        """Copy (or transcode) one packet of the input's audio stream."""
        if not self.transcode_audio:
            if packet.dts is None:  # the demuxer's end-of-stream marker
                return
            packet.stream = self.audio
            self.out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for encoded in self.audio.encode(frame):
                self.out.mux(encoded)

    def _flush(self) -> None:
        for packet in self.encoder.encode():
            self.out.mux(packet)
        if self.transcode_audio:
            for packet in self.audio.encode():
                self.out.mux(packet)


def _take(items: list[Any]) -> list[Any]:
    """A new list of `items`, which is emptied (so that a suspended generator holds none of them)."""
    taken = items[:]
    items.clear()
    return taken


def _video_encoder(out: Any, stream: Any, rate: Fraction, crf: int) -> Any:
    codec = (
        "libx264" if "libx264" in out.supported_codecs or _has_encoder("libx264") else out.default_video_codec
    )
    encoder = out.add_stream(codec, rate=rate)
    encoder.width, encoder.height = stream.width, stream.height
    # 4:2:0 needs even sides; odd-sized videos keep full chroma rather than losing a pixel row.
    encoder.pix_fmt = "yuv420p" if stream.width % 2 == 0 and stream.height % 2 == 0 else "yuv444p"
    encoder.time_base = stream.time_base
    if codec == "libx264":
        # The lookahead is most of the encoder's memory: at 1080p the preset's 40 frames hold
        # 0.36 GB once full, 20 frames 0.25 GB, 10 frames 0.17 GB (x264 alone, 64 frames). 20 is
        # x264's own "faster" preset's; the rest of "medium" (motion search, B-frames) is kept.
        encoder.options = {"crf": str(crf), "preset": "medium", "rc-lookahead": "20"}
    return encoder


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def _audio_stream(out: Any, audio: Any) -> tuple[Any, bool]:
    """(output audio stream, whether it is transcoded); copied when the container can hold the codec."""
    if audio is None:
        return None, False
    if audio.codec_context.name in out.supported_codecs:
        return out.add_stream_from_template(audio), False
    transcoded = out.add_stream(out.default_audio_codec, rate=audio.codec_context.sample_rate)
    return transcoded, True
