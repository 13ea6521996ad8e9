"""Landmarks over time: a one-euro filter per tracked face, restarted at scene cuts.

The aligned crop follows the five landmarks; raw per-frame landmarks jitter by a pixel or two,
which makes the swapped face shimmer. `LandmarkSmoother` smooths them with a one-euro filter
(Casiez et al., "1 € Filter", CHI 2012) per tracked face; `FaceTracker` adds scene-cut detection
(tracks restart when the picture changes abruptly) and returns the faces with smoothed landmarks.
`FaceFollower` finds the faces of the previous frame again near where they were, sparing the live
loop a full-frame detection on most frames.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from hififace.faces import Face
from hififace.types import Image, Landmarks5

__all__ = ["FaceFollower", "FaceTracker", "LandmarkSmoother"]


class LandmarkSmoother:
    """Five-point landmarks smoothed over time with a one-euro filter per tracked face.

    The one-euro filter is a low-pass filter whose cutoff rises with speed: still faces are
    smoothed hard (no jitter), moving faces follow with little lag. Speed is measured in face
    sizes per second (the eye-to-mouth distance), so the settings do not depend on resolution.

    Args:
        min_cutoff (float, default 1.0): cutoff in Hz when the face is still; lower = smoother.
        beta (float, default 2.0): how fast the cutoff rises with speed (Hz per face size per
            second); higher = less lag when the face moves, more jitter.
        derivative_cutoff (float, default 1.0): cutoff in Hz of the speed estimate.
        max_jump (float, default 0.5): a face farther than this many box widths from every track
            of the previous frame starts a new track (no smoothing across the jump).
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 2.0,
        derivative_cutoff: float = 1.0,
        max_jump: float = 0.5,
    ):
        if min_cutoff <= 0 or derivative_cutoff <= 0 or beta < 0 or max_jump <= 0:
            raise ValueError("min_cutoff, derivative_cutoff and max_jump must be > 0, beta >= 0")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self.max_jump = max_jump
        self._tracks: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget every track (call it at a scene cut)."""
        self._tracks = []

    def __call__(self, faces: Sequence[Face], t: float) -> list[Landmarks5]:
        """Smoothed landmarks for `faces` (same order) seen at time `t` in seconds.

        Tracks not matched by a face in this call end; faces without a track start one and come
        back unchanged.
        """
        previous, tracks, out = list(self._tracks), [], [None] * len(faces)
        # Larger faces pick their track first.
        for i in sorted(range(len(faces)), key=lambda k: -faces[k].area):
            face = faces[i]
            track = self._nearest(previous, face)
            raw = face.landmarks.astype(np.float64)
            if track is None or t <= track["t"]:
                track = {"x": raw, "dx": np.zeros_like(raw)}
            else:
                previous.remove(track)
                dt = t - track["t"]
                scale = max(_face_scale(raw), 1.0)
                dx = (raw - track["x"]) / dt
                dx_hat = _lerp(track["dx"], dx, _alpha(self.derivative_cutoff, dt))
                speed = np.linalg.norm(dx_hat, axis=1, keepdims=True) / scale
                cutoff = self.min_cutoff + self.beta * speed
                track = {"x": _lerp(track["x"], raw, _alpha(cutoff, dt)), "dx": dx_hat}
            track.update(t=t, center=np.array(face.center), width=face.width)
            tracks.append(track)
            out[i] = track["x"].astype(np.float32)
        self._tracks = tracks
        return out

    def _nearest(self, tracks: list[dict[str, Any]], face: Face) -> dict[str, Any] | None:
        best, best_distance = None, math.inf
        for track in tracks:
            distance = float(np.linalg.norm(track["center"] - np.array(face.center)))
            if distance < best_distance and distance <= self.max_jump * max(track["width"], face.width):
                best, best_distance = track, distance
        return best


class FaceTracker:
    """The chosen faces of consecutive frames, their landmarks smoothed, tracks restarted at cuts.

    Args:
        smoother (LandmarkSmoother or None): the filter; None aligns every frame on raw landmarks.
        cut_threshold (float, default 0.2): a scene cut when the mean absolute difference of
            consecutive 32 x 32 grayscale thumbnails, in [0, 1], exceeds it.
    """

    def __init__(self, smoother: LandmarkSmoother | None, cut_threshold: float = 0.2):
        self.smoother = smoother
        self.cut_threshold = cut_threshold
        self._last_thumb: np.ndarray | None = None

    def __call__(self, image: Image, faces: Sequence[Face], t: float) -> list[Face]:
        """`faces` of the frame `image` shown at `t` seconds, with smoothed landmarks (same order)."""
        thumb = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.float32) / 255.0
        cut = (
            self._last_thumb is not None
            and float(np.abs(thumb - self._last_thumb).mean()) > self.cut_threshold
        )
        self._last_thumb = thumb
        if self.smoother is None:
            return list(faces)
        if cut:
            self.smoother.reset()
        smoothed = self.smoother(faces, t)
        return [dataclasses.replace(face, landmarks=lm) for face, lm in zip(faces, smoothed, strict=True)]


class FaceFollower:
    """Find the previous frame's faces again near where they were, instead of in the whole frame.

    Between two camera frames a face moves a few pixels, while a full-frame detection is the
    costliest step of a live frame outside the generator. For each face of the previous frame the
    detector runs on a square region around it, scaled so that the face is about `face_side`
    pixels wide. The whole frame must be searched again (`follow` returns None) every
    `redetect_every` frames, and as soon as a face is not found in its region (it left, turned
    away, was covered, or the scene changed), so that new faces are picked up within
    `redetect_every` frames.

    Args:
        detect (callable RGB image -> list of Face): the detector (`FaceDetector.detect`).
        redetect_every (int, default 10): frames from one full-frame detection to the next; 1 never follows.
        face_side (int, default 64): the face's width in its scaled region (dlib's HOG with one
            upsampling finds faces from about 40 px); larger regions are never upscaled.
        margin (float, default 0.5): the region reaches this many face widths beyond the face's box.
        max_jump (float, default 0.5): a face found farther than this many face widths from where it
            was, or more than 1.5x larger or smaller, does not count as found again.
    """

    def __init__(
        self,
        detect: Callable[[Any], list[Face]],
        redetect_every: int = 10,
        face_side: int = 64,
        margin: float = 0.5,
        max_jump: float = 0.5,
    ):
        if redetect_every < 1 or face_side < 1 or margin < 0 or max_jump <= 0:
            raise ValueError("redetect_every and face_side must be >= 1, margin >= 0 and max_jump > 0")
        self.detect = detect
        self.redetect_every = redetect_every
        self.face_side = face_side
        self.margin = margin
        self.max_jump = max_jump
        self.faces: list[Face] = []
        self.since_detection = 0

    def follow(self, image: Image) -> list[Face] | None:
        """The previous frame's faces found again in `image` (same order), or None: search the whole frame.

        None when a full detection is due, when the previous frame had no face, or when a face is lost.
        """
        if not self.faces or self.since_detection + 1 >= self.redetect_every:
            self.since_detection = 0
            return None
        found = []
        for face in self.faces:
            again = self._find_near(image, face)
            if again is None:
                self.since_detection = 0
                return None
            found.append(again)
        self.since_detection += 1
        return found

    def update(self, faces: Sequence[Face]) -> None:
        """Remember the faces used in this frame (detected or followed): the next frame looks near them."""
        self.faces = list(faces)

    def _find_near(self, image: Image, face: Face) -> Face | None:
        height, width = image.shape[:2]
        size = max(face.width, face.height)
        cx, cy = face.center
        half = size * (0.5 + self.margin)
        x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
        x1, y1 = min(int(math.ceil(cx + half)), width), min(int(math.ceil(cy + half)), height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None  # the face left the frame
        region = image[y0:y1, x0:x1]
        scale = min(1.0, self.face_side / size)
        if scale < 1.0:
            shape = (max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1))
            region = cv2.resize(region, shape, interpolation=cv2.INTER_AREA)
        offset = np.array([x0, y0], dtype=np.float32)
        best, best_distance = None, self.max_jump * size
        for candidate in self.detect(np.ascontiguousarray(region)):
            box = np.array(candidate.box, dtype=np.float64).reshape(2, 2) / scale + offset
            mapped = Face(
                box=tuple(box.ravel()),
                score=candidate.score,
                landmarks=candidate.landmarks / scale + offset,
                landmarks68=None if candidate.landmarks68 is None else candidate.landmarks68 / scale + offset,
            )
            distance = math.dist(mapped.center, (cx, cy))
            ratio = mapped.width / max(face.width, 1e-6)
            if distance <= best_distance and 1 / 1.5 <= ratio <= 1.5:
                best, best_distance = mapped, distance
        return best


def _face_scale(landmarks: np.ndarray) -> float:
    """Eye-centre to mouth-centre distance: a face size that barely changes with yaw."""
    return float(np.linalg.norm(landmarks[:2].mean(axis=0) - landmarks[3:].mean(axis=0)))


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    # One-euro filter: the smoothing factor of a first-order low-pass at `cutoff` Hz over `dt` s.
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


def _lerp(previous: np.ndarray, current: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    return previous + alpha * (current - previous)
